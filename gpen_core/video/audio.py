"""The source's audio in the written MP4: its packets copied as they are, or re-encoded when MP4 cannot hold them.

MP4 holds AAC, MP3, Opus, FLAC, ALAC, AC-3, E-AC-3 and MP2 (among others): those packets are copied, not
re-encoded, so the audio is bit for bit the source's. A codec MP4 refuses (PCM from an AVI or a MOV, Vorbis
from a WebM ...) is decoded and re-encoded as AAC at :data:`AAC_BIT_RATE`, with a warning; the result
says which happened (:attr:`AudioTrack.description`). Only the first audio stream is written.
"""
from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["AAC_BIT_RATE", "AudioTrack", "mp4_takes"]

AAC_BIT_RATE = 192_000
"""Bits per second of re-encoded audio (at most :data:`AAC_BITS_PER_SAMPLE` per sample and channel)."""
STANDARD_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
"""FFmpeg's default channel layout per channel count (AAC's channel configurations)."""
PROBE_PACKET_BYTES = 16
AAC_BITS_PER_SAMPLE = 4
"""AAC takes at most 6 bits per sample and channel (6144 per 1024-sample frame); 16 kHz mono gets 64 kb/s."""


def mp4_takes(stream: Any) -> bool:
    """Whether an MP4 file can hold the packets of the audio ``stream`` as they are.

    Tried on a file in memory, header, one placeholder packet and trailer: some codecs pass the header and
    fail only in the trailer (PCM whose channel order is unspecified, e.g. ``2 channels`` from a Matroska file).
    """
    import av

    probe = av.open(io.BytesIO(), mode="w", format="mp4")
    try:
        out = probe.add_stream_from_template(stream)
        probe.start_encoding()
        packet = av.Packet(bytes(PROBE_PACKET_BYTES))
        packet.pts = packet.dts = 0
        packet.time_base = stream.time_base
        packet.stream = out
        probe.mux(packet)
        probe.close()
    except (av.FFmpegError, ValueError):  # ValueError: a codec the muxer does not list
        return False
    return True


class AudioTrack:
    """The audio stream of an output container, fed with the source's packets in order.

    Args:
        container: the output container (before its first packet).
        stream: the source's audio stream.
        name: the source, for the warning.
    """

    def __init__(self, container: Any, stream: Any, name: str) -> None:
        self.source = stream
        self.copied = mp4_takes(stream)
        codec = stream.codec_context.name
        if self.copied:
            self.stream = container.add_stream_from_template(stream)
            self.description = f"{codec}, copied"
        else:
            rate, channels = stream.codec_context.sample_rate, stream.codec_context.layout.nb_channels
            if channels not in STANDARD_LAYOUTS:
                raise ValueError(f"{name}: its audio ({codec}, {channels} channels) cannot go into an MP4 as it is, "
                                 "and AAC takes at most 8 channels; convert the audio first")
            self.stream = container.add_stream("aac", rate=rate)
            self.stream.layout = STANDARD_LAYOUTS[channels]  # a source's channel order may be unspecified
            bit_rate = min(AAC_BIT_RATE, AAC_BITS_PER_SAMPLE * rate * channels)
            self.stream.bit_rate = bit_rate
            self.description = f"{codec} re-encoded as AAC at {bit_rate // 1000} kb/s (MP4 cannot hold {codec})"
            log.warning("%s: its audio (%s) cannot go into an MP4 as it is: re-encoded as AAC at %d kb/s", name,
                        codec, bit_rate // 1000)
        self.container = container

    def mux(self, packets: Iterable[Any]) -> None:
        """Write the source's packets (copied, or decoded and encoded)."""
        for packet in packets:
            if self.copied:
                packet.stream = self.stream
                self.container.mux(packet)
                continue
            for frame in packet.decode():
                self.container.mux(self.stream.encode(frame))

    def flush(self) -> None:
        """End the stream (the re-encoder's last packets)."""
        if not self.copied:
            for frame in self.source.codec_context.decode(None):
                self.container.mux(self.stream.encode(frame))
            self.container.mux(self.stream.encode(None))
