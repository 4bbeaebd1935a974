"""The job store both processes speak: Redis keys, job states, records, transitions, shared settings.

The gateway (api/) and the workers (worker/) import this package; it imports neither of them, nor
inference, celery or torch (stdlib, pydantic, pydantic-settings and redis only). One module per
concern, so a reader finds a key, a record or a transition by the module's name:

- ``keys``: the Celery task and queue names and every Redis key the service writes;
- ``records``: the job record and its hash (de)serialisation, with what it is made of: job ids,
  job states, the codes a failed job carries, the wall clock of its timestamps;
- ``queue`` and ``queue_scripts``: the fair queue (atomic admission, round-robin claims, leases,
  positions): the calls and replies, and the Lua; with what admission compares (request and upload
  digests, the value stored under an Idempotency-Key) and the wait estimate (service time);
- ``batches``, ``batch_view``: batches of jobs; ``job_view``: the job body clients see;
- ``webhooks``, ``callback_policy``, ``webhook_settings``: signed webhook deliveries;
- ``transitions``: the commands that end a job, added to a sync or async pipeline;
- ``heartbeats``: what workers announce;
- ``settings``: the settings the gateway and the workers both read.
"""
