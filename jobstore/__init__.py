"""The job store both processes speak: Redis keys, job states, records, transitions, shared settings.

The gateway (api/) and the workers (worker/) import this package; it imports neither of them, nor
inference, celery or torch (stdlib, pydantic, pydantic-settings and redis only). One module per
concept, so a reader finds a key, a state or a transition by its name:

- ``keys``: the Celery task and queue names and every Redis key the service writes;
- ``ids``: job ids; ``clock``: the wall clock the records use;
- ``states``, ``errors``: the job states and the codes a failed job carries;
- ``records``: the job record and its hash (de)serialisation;
- ``fingerprints``: request and upload digests (deduplication, idempotency);
- ``queue`` and ``queue_scripts``: the fair queue (atomic admission, round-robin claims, leases,
  positions): the calls and replies, and the Lua;
- ``batches``, ``batch_view``: batches of jobs; ``job_view``: the job body clients see;
- ``webhooks``, ``callback_policy``, ``webhook_settings``: signed webhook deliveries;
- ``transitions``: the commands that end a job, added to a sync or async pipeline;
- ``heartbeats``, ``service_time``: what workers announce, and the wait estimate built on it;
- ``idempotency``: the value stored under an Idempotency-Key;
- ``settings``: the settings the gateway and the workers both read.
"""
