"""pprof profiles: decode (``pprof``), build from eBPF stacks (``writer``)."""

from tui.profiles.pprof import (
    CallNode,
    Profile,
    ProfileError,
    SampleType,
    TopRow,
    call_tree,
    cpu_profile_stacks,
    folded_stacks,
    top_functions,
)
from tui.profiles.writer import (
    build_profile,
    cpu_profile_from_frames,
    cpu_profile_from_stacks,
    write_profile,
)

__all__ = [
    "CallNode",
    "Profile",
    "ProfileError",
    "SampleType",
    "TopRow",
    "build_profile",
    "call_tree",
    "cpu_profile_stacks",
    "cpu_profile_from_frames",
    "cpu_profile_from_stacks",
    "folded_stacks",
    "top_functions",
    "write_profile",
]
