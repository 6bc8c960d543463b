"""Test support: running LSD as a real process or in-process on a real socket."""
