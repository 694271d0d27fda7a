"""Hypothesis strategies for resources and capabilities."""

from __future__ import annotations

from hypothesis import strategies as st

from dms.types import CPU, GPU, GPUVendor, Resources

GiB = 1024**3
cores = st.integers(min_value=0, max_value=64_000).map(lambda m: m / 1000)
sizes = st.integers(min_value=0, max_value=64).map(lambda n: n * GiB // 4)
vendors = st.sampled_from([GPUVendor.NVIDIA, GPUVendor.AMD, GPUVendor.INTEL])
models = st.sampled_from(["A100", "RTX 4090", "MI300", "Arc"])


def device_gpus(prefix: str = "g") -> st.SearchStrategy[tuple[GPU, ...]]:
    """Physical devices: distinct identities."""

    def build(items: list[tuple[GPUVendor, str, int]]) -> tuple[GPU, ...]:
        return tuple(
            GPU(index=i, vendor=v, model=m, vram=vram, uuid=f"{prefix}-{i}")
            for i, (v, m, vram) in enumerate(items)
        )

    return st.lists(
        st.tuples(vendors, models, st.integers(min_value=1, max_value=8).map(lambda n: n * GiB)),
        max_size=4,
    ).map(build)


requirement_gpus = st.lists(
    st.builds(
        GPU,
        vendor=st.sampled_from([GPUVendor.UNKNOWN, GPUVendor.NVIDIA, GPUVendor.AMD]),
        vram=st.integers(min_value=0, max_value=8).map(lambda n: n * GiB),
    ),
    max_size=3,
).map(tuple)


def resources(gpus: st.SearchStrategy[tuple[GPU, ...]]) -> st.SearchStrategy[Resources]:
    return st.builds(
        Resources,
        cpu=st.builds(CPU, cores=cores),
        ram=sizes,
        disk=sizes,
        gpus=gpus,
    )


machines = resources(device_gpus())
requirements = resources(requirement_gpus)
