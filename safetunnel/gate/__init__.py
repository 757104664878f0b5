"""The gate: a sans-IO decision engine between a remote connection and the local service.

Feed it bytes with ``receive_remote``/``receive_service`` and ask ``next_event(now)`` what to
do; it never touches a socket, a clock or a thread, so every rule about who gets through can be
tested with plain byte scripts, and one gate serves one connection only.
"""
