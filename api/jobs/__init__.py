"""Jobs: submit one photo (``submit.submit_job``), read a job, fetch its result, delete it.

Owns the submission policy (the order of the prechecks, decode, admission, the answer), the job
store's reads and writes for single jobs, and the Celery producer. Builds on ``api.edge`` and
``api.tenancy``; never imports batches, events or ops.
"""
