"""The HTTP services: the metadata API and the metadata agent.

Nothing here renders guest-visible bytes; it decides which instance asks and
how the bytes travel.

    config.py      the API's and the agent's settings (loaded by metadata_content.settings)
    runtime.py     what both share: reply, refusal, access log, logging set-up
    identity.py    who is asking: signed proxy headers, direct peers, IMDSv2 tokens
    service.py     identity -> cached tree -> reply, framework-free
    api.py         the Flask app and its fast path for cached answers
    cache.py       rendered bytes per instance and path
    serve.py       granian workers and the admin server (/healthz, /metrics)
    agent.py       haproxy's upstream: finds the port, signs, relays (RSGI)
    upstream.py    the agent's keep-alive client for the API
    metrics.py     counters shared by the workers
    vendordata.py  static and dynamic vendor data

Operating the chain around them (haproxy, namespaces, the lab) is
:mod:`metadata_content.chain`; the store is :mod:`metadata_content.store`.
"""
