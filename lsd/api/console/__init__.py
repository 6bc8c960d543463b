"""The console: server-rendered pages at /ui over the statistics tables and bounded reads (docs/console.md)."""
