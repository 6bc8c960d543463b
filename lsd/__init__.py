"""LSD, the LLM Service Daemon: an LLM gateway that records every inference in PostgreSQL."""

__version__ = "0.7.0"
