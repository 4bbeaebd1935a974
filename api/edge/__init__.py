"""The HTTP edge: upload limits and multipart parsing, image normalisation under the decode budget,
HEAD, security headers, the API docs and the web page.

Knows nothing of jobs, batches or events: it turns requests into bytes and pictures, and back.
"""
