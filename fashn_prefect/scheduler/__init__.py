"""The account scheduler: the API's per-account limits (in-flight lanes, run and status rate
windows), held in this process and, with shared limits, on the Prefect server.

Every prediction in a process, from a flow or a user's task, goes through it. Imports
only the standard library and Prefect's concurrency API; never another layer.
"""
