"""The TCP proxy of the fault tests is the one users get: ``tidings.testing.TcpProxy``."""

from tidings.testing.tcp_proxy import TcpProxy

__all__ = ["TcpProxy"]
