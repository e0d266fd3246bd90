"""How the console reaches a node and speaks frames with the agent there.

A transport starts ``python3 <agent> --pod-uid UID --container-id CID`` on the
pod's node and hands back an ``AgentLink``: frame lines in, command lines out.
``local`` runs it as a subprocess, ``ssh`` over asyncssh, ``pprof-only`` has
no agent at all and makes frames from the API server's pod proxy.
"""
