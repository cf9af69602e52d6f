"""Files: atomic writes, the one JSON writer, and the trace store (writer, reader, in-memory ``Trace``).

Nothing here knows about models; everything above reads and writes results through it.
"""
