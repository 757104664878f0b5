"""Well-known ports and server greetings: what a local service probably is. Pure data.

Used both to guess the protocol without talking to the service (see preflight) and to flag
ports whose protocols hand out admin or database access to whoever can connect.
"""

from __future__ import annotations

# Protocols where a connection is effectively an admin session or a database login; sharing
# them, even token-gated, deserves a typed confirmation.
SENSITIVE_PORTS: dict[int, str] = {
    22: "SSH",
    23: "Telnet",
    135: "Windows RPC",
    445: "SMB",
    1433: "Microsoft SQL Server",
    1521: "Oracle DB",
    2181: "ZooKeeper",
    2375: "the Docker API",
    2376: "the Docker API (TLS)",
    2379: "etcd",
    2380: "etcd (peer)",
    3306: "MySQL",
    3389: "RDP (remote desktop)",
    4243: "the Docker API",
    5432: "PostgreSQL",
    5672: "AMQP (RabbitMQ)",
    5900: "VNC",
    5901: "VNC",
    5984: "CouchDB",
    5985: "WinRM",
    5986: "WinRM (TLS)",
    6000: "X11",
    6379: "Redis",
    6443: "the Kubernetes API",
    8086: "InfluxDB",
    8200: "Vault",
    8500: "Consul",
    9042: "Cassandra",
    9092: "Kafka",
    9200: "Elasticsearch",
    9300: "Elasticsearch (transport)",
    10250: "the kubelet API",
    11211: "memcached",
    15672: "the RabbitMQ admin UI",
    27017: "MongoDB",
}

# Plain-HTTP ports common enough that "http" is a fair guess when the server stays silent.
HTTP_PORTS = frozenset({80, 3000, 3001, 4000, 4200, 5000, 5173, 8000, 8008, 8080, 8081, 8888, 9000})

# TLS ports: the gate cannot sniff HTTP inside TLS, so these need the raw-TCP preamble.
TLS_PORTS: dict[int, str] = {443: "HTTPS", 8443: "HTTPS"}

_GREETINGS: tuple[tuple[bytes, str], ...] = (
    (b"SSH-", "SSH"),
    (b"RFB ", "VNC"),
    (b"+OK", "POP3"),
    (b"* OK", "IMAP"),
    (b"220", "SMTP/FTP"),
)


def classify_greeting(data: bytes) -> str:
    """Name the server-first protocol behind ``data``; "a server-first protocol" if unknown.

    Only a fixed name is returned, never the bytes themselves: the greeting is arbitrary input
    and must not reach the terminal (escape sequences).
    """
    for prefix, name in _GREETINGS:
        if data.startswith(prefix):
            return name
    if _is_mysql_handshake(data):
        return "MySQL"
    return "a server-first protocol"


def _is_mysql_handshake(data: bytes) -> bool:
    # MySQL packet: 3-byte little-endian length, sequence id 0, then protocol version 10
    # (or 0xff when the server refuses us straight away, e.g. "host is not allowed").
    if len(data) < 5 or data[3] != 0:
        return False
    length = int.from_bytes(data[:3], "little")
    return 0 < length < 1024 and data[4] in (0x0A, 0xFF)
