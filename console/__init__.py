"""The admin UI: marketers edit, preview and publish decision tables in the browser.

Shell-level (like gateway.app): it uses the decision service and the state, and is mounted by the
gateway under /admin beside the REST API.
"""
