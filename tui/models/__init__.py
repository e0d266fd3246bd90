"""Pure models of what the console shows, fed by frames (``bpf.schema``).

Nothing here imports Textual: widgets render the frozen snapshots built here.
"""
