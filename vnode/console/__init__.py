"""The operator console (issue 14, docs/CONSOLE.md): server-rendered pages at /console."""
