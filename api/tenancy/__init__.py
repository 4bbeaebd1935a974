"""Tenancy: who is asking (API keys, client identity behind trusted proxies) and how often they may.

The lowest folder of the gateway: it imports nothing of the use cases. ``keys`` is standard
library only (the ``animegan keys`` command imports it).
"""
