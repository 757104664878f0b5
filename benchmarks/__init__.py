"""safetunnel benchmark against OpenSSH ``ssh -R``. Run ``python benchmarks/bench.py``.

``services.py`` and ``loadgen.py`` are standalone stdlib-only scripts started as their own
processes, so the services, the forwarders and the load generator never share a process or a GIL.
"""
