"""The live frame callback over a real WebRTC connection: two aiortc peers in this process, frames of
bikes.mp4 sent by one, annotated by the callback on the other; and the ICE servers from settings."""

from __future__ import annotations

import asyncio
import fractions

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, VideoStreamTrack

from imgrec.core.errors import SettingsError
from imgrec.tasks.base import DecodeOptions
from imgrec.video.live import LiveAnnotator, ice_servers
from tests.helpers.settings import make_settings
from tests.helpers.video import bikes_frames

FRAMES = 6


class ClipTrack(VideoStreamTrack):
    """Sends the given frames (then repeats the last), 10 per second."""

    def __init__(self, frames):
        super().__init__()
        self.frames, self.sent = frames, 0

    async def recv(self):
        await asyncio.sleep(0.1)
        frame = av.VideoFrame.from_ndarray(self.frames[min(self.sent, len(self.frames) - 1)], format="rgb24")
        frame.pts, frame.time_base = self.sent * 9000, fractions.Fraction(1, 90000)
        self.sent += 1
        return frame


async def _loopback(frames, callback, wanted: int):
    sender, receiver = RTCPeerConnection(), RTCPeerConnection()
    sender.addTrack(ClipTrack(frames))
    received = asyncio.get_running_loop().create_future()
    receiver.on("track", lambda track: received.set_result(track))
    await sender.setLocalDescription(await sender.createOffer())
    await receiver.setRemoteDescription(sender.localDescription)
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    try:
        track = await asyncio.wait_for(received, 30)
        pairs = []
        for _ in range(wanted):
            frame = await asyncio.wait_for(track.recv(), 30)
            pairs.append((frame.to_ndarray(format="rgb24"), callback(frame)))
        return pairs
    finally:
        await sender.close()
        await receiver.close()


def test_the_frame_callback_annotates_frames_received_over_webrtc(tiny_predictor):
    frames = bikes_frames(FRAMES, (160, 68), step=10)
    annotator = LiveAnnotator(tiny_predictor, DecodeOptions(top_k=2))
    pairs = asyncio.run(_loopback(frames, annotator.video_frame_callback, FRAMES))
    for received, annotated in pairs:
        assert isinstance(annotated, av.VideoFrame)
        drawn = annotated.to_ndarray(format="rgb24")
        assert drawn.shape == received.shape == (68, 160, 3)
        # Labels drawn top-left; the rest is the received frame.
        assert np.abs(drawn[:10, :40].astype(int) - received[:10, :40].astype(int)).mean() > 20
        assert np.abs(drawn[40:, 80:].astype(int) - received[40:, 80:].astype(int)).mean() < 2
    stats = annotator.stats()
    assert stats.frames == FRAMES and stats.fps > 0 and stats.latency_ms > 0
    assert stats.summary.split()[0] in {"cat", "dog", "bird"}


def test_an_overlay_runs_at_a_lower_rate(tiny_predictor):
    calls = []

    def overlay(pixels, result):
        calls.append(result)
        return np.zeros_like(pixels)

    annotator = LiveAnnotator(tiny_predictor, DecodeOptions(), overlay=overlay, overlay_every=3)
    frame = bikes_frames(1, (200, 120))[0]
    drawn = [annotator(frame) for _ in range(7)]
    assert len(calls) == 3  # frames 0, 3 and 6
    assert drawn[1][80:, 120:].max() == 0  # the overlay's (black) pixels, reused between maps


def test_ice_servers_come_from_settings(tmp_path):
    assert ice_servers(make_settings(tmp_path)) == []
    turn = '[{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}]'
    assert ice_servers(make_settings(tmp_path, webrtc_ice_servers=turn))[0]["username"] == "u"
    with pytest.raises(SettingsError, match="IMGREC_WEBRTC_ICE_SERVERS is not valid JSON"):
        ice_servers(make_settings(tmp_path, webrtc_ice_servers="stun:x"))
    with pytest.raises(SettingsError, match="IMGREC_WEBRTC_ICE_SERVERS is dict"):
        ice_servers(make_settings(tmp_path, webrtc_ice_servers='{"urls": "stun:x"}'))
