"""The ground every room stands on: errors, time, the workspace layout, storage and AWS plumbing.

Imports nothing from the other rooms (docs/architecture.md).
"""
