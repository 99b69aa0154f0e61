"""The CPU a number came from: its name and the flags that decide this model's speed (Linux's
/proc/cpuinfo; elsewhere what `platform` knows and no flags)."""

from __future__ import annotations

import os
import platform

# The /proc/cpuinfo flags that decide this model's speed: vector width, bf16 and int8 dot products.
SPEED_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8",
)
# The ones that give int8 dot products (VNNI or AMX): without them ORT advises reduce_range for int8.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
# /proc/cpuinfo flags that name instruction-set extensions a compiler may use under -march=native
# (what an AOTInductor package's code is tied to); the others (hypervisor, caches, ...) do not matter.
ISA_FLAG_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "bmi", "abm", "popcnt", "movbe", "adx", "aes", "pclmul",
                     "sha_ni", "vaes", "vpclmulqdq", "gfni", "amx", "lzcnt", "tbm", "xop", "asimd", "sve")


def _cpuinfo_field(name: str) -> str | None:
    """The first `name : value` line of /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.split(":", 1)[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: the callers fall back
    return None


def cpu_model() -> str:
    """The CPU's marketing name (Linux), else what `platform` knows."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_flags() -> dict[str, object]:
    """Which of SPEED_FLAGS the CPU has, and the oneDNN ISA cap if one is set."""
    flags = set((_cpuinfo_field("flags") or "").split())
    return {
        "present": [f for f in SPEED_FLAGS if f in flags],
        "absent": [f for f in SPEED_FLAGS if f not in flags],
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
    }



def isa_flags() -> list[str]:
    """This CPU's instruction-set extensions (sorted /proc/cpuinfo flags, ISA_FLAG_PREFIXES; "Features"
    on ARM); empty where /proc/cpuinfo is not readable."""
    flags = (_cpuinfo_field("flags") or _cpuinfo_field("Features") or "").split()
    return sorted(f for f in flags if f.startswith(ISA_FLAG_PREFIXES))


def missing_isa(required: list[str]) -> list[str]:
    """Which of `required` (another CPU's isa_flags) this CPU lacks."""
    here = set(isa_flags())
    return [f for f in required if f not in here]
