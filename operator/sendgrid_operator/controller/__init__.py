"""The operator: reconciles SendGridConnections and SegmentExports, and runs exports as Jobs.

``handlers`` is the one module that knows kopf; everything it calls is a plain, typed
function in the modules beside it, testable without kopf or a cluster.
"""
