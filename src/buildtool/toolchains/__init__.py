"""Tools: discovery of ranked candidates with versions, private provisioning from package
registries, container engines.

May import: the foundation modules and detect.
"""
