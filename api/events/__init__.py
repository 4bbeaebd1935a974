"""Events: follow a job or a batch live, as Server-Sent Events, through one pub/sub connection.

Builds on ``api.jobs`` and ``api.batches`` (what a stream shows is what GET shows).
"""
