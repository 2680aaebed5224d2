"""`ocgateway backfill`: submitted OrderCloud orders loaded into CDP through its Batch API.

The live tracker only sees orders placed through the gateway; this fills in the history before
it. `ordercloud` reads orders with an admin client, `records` turns them into batch records
(pure), `batchfile` writes the gzip file, `cdpbatch` uploads it, `state` makes a killed run
resumable, `run` ties the steps together and `command` is the CLI.
"""
