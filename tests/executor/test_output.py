"""Output sinks keep a prefix of at most `cap` bytes and count everything written."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from dms.executor.output import FileSink, MemorySink

writes = st.lists(st.binary(max_size=64), max_size=20)
caps = st.integers(min_value=0, max_value=300)


class TestCapping:
    """What is kept is exactly the first `cap` bytes; truncation is reported, never silent."""

    @given(chunks=writes, cap=caps)
    def test_memory_sink_keeps_the_prefix(self, chunks: list[bytes], cap: int) -> None:
        sink = MemorySink(cap)
        for chunk in chunks:
            sink.write(chunk)
        everything = b"".join(chunks)
        assert sink.read(0, 10_000) == everything[:cap]
        assert sink.written == len(everything)
        assert sink.truncated == (len(everything) > cap)

    @given(chunks=writes, cap=caps)
    def test_file_sink_keeps_the_prefix(
        self, tmp_path_factory: object, chunks: list[bytes], cap: int
    ) -> None:
        folder = tmp_path_factory.mktemp("sink")  # type: ignore[attr-defined]
        sink = FileSink(folder / "out.log", cap)
        for chunk in chunks:
            sink.write(chunk)
        everything = b"".join(chunks)
        assert sink.read(0, 10_000) == everything[:cap]
        sink.close()
        assert (folder / "out.log").read_bytes() == everything[:cap]
        assert sink.truncated == (len(everything) > cap)

    def test_reads_at_offsets_return_the_rest(self, tmp_path: Path) -> None:
        sink = FileSink(tmp_path / "out.log", 100)
        sink.write(b"hello world")
        assert sink.read(6) == b"world"
        assert sink.read(11) == b""

    def test_a_reopened_sink_reads_what_an_earlier_process_wrote(self, tmp_path: Path) -> None:
        sink = FileSink(tmp_path / "out.log", 100)
        sink.write(b"kept")
        sink.close()
        again = FileSink.existing(tmp_path / "out.log", written=10, cap=100)
        assert again.read(0) == b"kept"
        assert again.written == 10
        assert again.truncated
