"""What the gateway and the workers both report about themselves: logs, process and host figures.

Imported by api/ and worker/; imports neither of them, nor jobstore or inference (stdlib, psutil
and prometheus_client only):

- ``logs``: text or JSON log lines carrying a context id (``request_id``, ``job_id``);
- ``process``: this or another process's RSS, disk IO and liveness (psutil), and the per-job
  peak RSS counter the kernel keeps (VmHWM, reset through /proc/self/clear_refs);
- ``peak_rss``: the peak RSS of this process over one job;
- ``families``: the metric families every process writes; ``process_stats`` fills them;
- ``host``: host-wide CPU figures, read at scrape time;
- ``exposition``: the scrape registry over every process of the multiprocess directory.
"""
