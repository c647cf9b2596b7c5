"""Video sources and sinks (`prtr_tf.inference.video`, PyAV): round trip, broken and
missing inputs, atomic outputs, image sequences, streams, batching and progress."""
import functools
import http.server
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from prtr_tf.inference import video
from prtr_tf.inference.synthetic_clip import make_clip
from prtr_tf.inference.video import Frame, SourceError, open_source
from prtr_tf.inference.video_out import (JsonlWriter, Progress, VideoWriter, batched,
                                         frame_record)


@pytest.fixture(scope="module")
def clip():
    return make_clip()  # 60 frames, 400x240, 15 fps


@pytest.fixture(scope="module")
def clip_mp4(clip, tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with VideoWriter(path, clip.fps) as writer:
        for frame in clip.frames:
            writer.write(frame)
    return path


def _read(spec, **kwargs):
    logged = []
    with open_source(spec, log=logged.append, **kwargs) as source:
        frames = list(source)
    return source, frames, logged


def test_round_trip(clip, clip_mp4):
    # Count, size, fps, timestamps, H.264, and pixels: each decoded frame is closest
    # to its own source frame (rules out dropped, duplicated or shifted frames) and
    # within the measured compression error (mean |error| 9.2 of 255, PSNR >= 25.7 dB
    # at crf 23 on this noisy background).
    source, frames, logged = _read(str(clip_mp4))
    info = source.info
    assert (info.kind, info.width, info.height, info.fps, info.frame_count, info.codec) == \
        ("video", 400, 240, 15.0, 60, "h264")
    assert len(frames) == 60 and source.problem is None and logged == []
    assert [f.index for f in frames] == list(range(60))
    assert np.allclose([f.timestamp_s for f in frames], np.arange(60) / 15.0, atol=1e-3)
    assert all(f.rgb.dtype == np.uint8 and f.rgb.shape == (240, 400, 3) for f in frames)
    mae, psnr = [], []
    for k, f in enumerate(frames):
        err = [np.abs(f.rgb.astype(np.float64) - clip.frames[j]).mean()
               for j in (k - 1, k, k + 1) if 0 <= j < 60]
        own = err[0] if k == 0 else err[1]
        assert own == min(err)
        mae.append(own)
        mse = np.mean((f.rgb.astype(np.float64) - clip.frames[k]) ** 2)
        psnr.append(10 * np.log10(255.0 ** 2 / mse))
    print(f"round trip: mean |error| {np.mean(mae):.2f}, min PSNR {min(psnr):.1f} dB")
    assert np.mean(mae) < 12.0 and min(psnr) > 24.0


def test_fractional_fps_and_odd_size(tmp_path):
    # 29.97 fps is stored as 30000/1001; an odd size is padded to even (yuv420p).
    path = tmp_path / "odd.mp4"
    rng = np.random.default_rng(0)
    with VideoWriter(path, 29.97) as writer:
        for _ in range(5):
            writer.write(rng.integers(0, 255, (31, 47, 3), dtype=np.uint8))
    assert writer.padded and writer.codec == "libx264"
    source, frames, _ = _read(str(path))
    assert source.info.fps == pytest.approx(30000 / 1001)
    assert (source.info.width, source.info.height) == (48, 32) and len(frames) == 5


def test_truncated_video_keeps_frames_done(clip, clip_mp4, tmp_path):
    # Bytes cut off the end (an interrupted copy): the frames before the cut are
    # yielded (equal to those of the whole file; the last one, decoded from the cut
    # packet, may be partly damaged), then the end is reported with the count - no
    # exception, no silent success.
    data = clip_mp4.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    source, frames, logged = _read(str(cut))
    _, whole, _ = _read(str(clip_mp4))
    assert 10 < len(frames) < 60
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(frames[:-1], whole))
    assert np.abs(frames[-1].rgb.astype(np.float64) - whole[len(frames) - 1].rgb).mean() < 20
    assert source.problem is not None and logged == [source.problem]
    assert f"{len(frames)} of 60 frames" in source.problem
    assert "truncated" in source.problem and "cut.mp4" in source.problem


def test_damaged_middle_skipped_and_reported(clip_mp4, tmp_path):
    # 3 kB of garbage mid-file (a glitch): the damaged packets are skipped, decoding
    # goes on to the end (rules out stopping at the first bad packet) and the damage
    # is reported.
    data = bytearray(clip_mp4.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 3000] = np.random.default_rng(0).bytes(3000)
    (tmp_path / "glitch.mp4").write_bytes(bytes(data))
    source, frames, logged = _read(str(tmp_path / "glitch.mp4"))
    assert 50 <= len(frames) < 60
    assert frames[-1].timestamp_s == pytest.approx(59 / 15.0, abs=1e-3)
    assert "damaged packet(s) skipped" in source.problem and logged == [source.problem]


def test_bad_inputs_clear_errors(tmp_path):
    # Missing file, empty file, not a video, a folder without images, an mp4 whose
    # index (at the end of the file) is missing: SourceError naming the file.
    with pytest.raises(SourceError, match="missing.mp4: no such file"):
        open_source(str(tmp_path / "missing.mp4"))
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(SourceError, match="empty file"):
        open_source(str(tmp_path / "empty.mp4"))
    (tmp_path / "notes.mp4").write_text("not a video at all\n" * 50)
    with pytest.raises(SourceError, match="notes.mp4: not a readable video"):
        open_source(str(tmp_path / "notes.mp4"))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(SourceError, match="folder without image files"):
        open_source(str(tmp_path / "nothing"))
    head = tmp_path / "head.mp4"   # the first 2 kB of an mp4: ftyp box, nothing usable
    with VideoWriter(head, 10, preset="ultrafast") as writer:
        for _ in range(3):
            writer.write(np.zeros((16, 16, 3), np.uint8))
    head.write_bytes(head.read_bytes()[:40])
    with pytest.raises(SourceError, match="head.mp4"):
        open_source(str(head))


def test_webcam_index_absent_names_the_index():
    # --source=7 (int or digit string) on a machine without /dev/video7: an error
    # naming the index and the device, raised when opening (not a hang, not a stack
    # trace from FFmpeg).
    absent = next(i for i in range(7, 64) if not os.path.exists(f"/dev/video{i}"))
    for spec in (absent, str(absent)):
        with pytest.raises(SourceError) as err:
            open_source(spec)
        assert f"webcam {absent}" in str(err.value)
        assert f"/dev/video{absent}" in str(err.value)
    with pytest.raises(SourceError, match=f"webcam {absent}: .*Linux"):
        video.webcam_device(absent, platform="win32")
    assert video.webcam_device(2, platform="darwin") == ("2", "avfoundation")


def _no_partials(folder):
    return [n for n in os.listdir(folder) if ".partial-" in n]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_video_and_jsonl(tmp_path, error):
    # An exception (also Ctrl-C) mid-write: nothing under the final names, no temporary
    # file left, and an older file under the final name is untouched.
    old = tmp_path / "old.mp4"
    old.write_bytes(b"previous run")
    with pytest.raises(error):
        with VideoWriter(tmp_path / "out.mp4", 10) as writer, \
                JsonlWriter(tmp_path / "out.jsonl") as log, \
                VideoWriter(old, 10) as replacing:
            for k in range(5):
                frame = np.full((32, 32, 3), k * 40, np.uint8)
                writer.write(frame)
                replacing.write(frame)
                log.write({"frame": k})
            assert _no_partials(tmp_path)  # the data goes to temporary files
            raise error("stop")
    assert sorted(os.listdir(tmp_path)) == ["old.mp4"]
    assert old.read_bytes() == b"previous run"
    # the same without error: both files appear complete
    with VideoWriter(tmp_path / "out.mp4", 10) as writer, \
            JsonlWriter(tmp_path / "out.jsonl") as log:
        for k in range(5):
            writer.write(np.full((32, 32, 3), k * 40, np.uint8))
            log.write({"frame": k})
    assert _no_partials(tmp_path) == []
    assert [json.loads(line)["frame"] for line in
            (tmp_path / "out.jsonl").read_text().splitlines()] == list(range(5))
    assert len(_read(str(tmp_path / "out.mp4"))[1]) == 5


def test_killed_writer_leaves_no_file_under_final_name(tmp_path):
    # kill -9 mid-video (no cleanup code runs): the final name never appears, only the
    # ``.partial-`` temporary file (which `remove_partials` recognises).
    script = (
        "import sys, time, numpy as np\n"
        "from prtr_tf.inference.video_out import VideoWriter\n"
        "w = VideoWriter(sys.argv[1], 10)\n"
        "for k in range(10000):\n"
        "    w.write(np.full((64, 64, 3), k % 255, np.uint8))\n"
        "    if k == 20:\n"
        "        print('writing', flush=True)\n"
        "    time.sleep(0.01)\n")
    final = tmp_path / "run.mp4"
    proc = subprocess.Popen([sys.executable, "-c", script, str(final)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    names = os.listdir(tmp_path)
    assert "run.mp4" not in names
    assert len(names) == 1 and names[0].startswith(".run.mp4.partial-")
    from prtr_tf.files.atomic import remove_partials
    assert remove_partials(str(tmp_path)) == names and os.listdir(tmp_path) == []


def test_writer_refuses_bad_frames(tmp_path):
    # A size change mid-video or a non-uint8 frame is an error (the partial file then
    # goes away with the with-block); closing without frames creates no file.
    with pytest.raises(ValueError, match="the video is 32x32"):
        with VideoWriter(tmp_path / "a.mp4", 10) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8))
            writer.write(np.zeros((16, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        VideoWriter(tmp_path / "b.mp4", 10).write(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="no frame was written"):
        VideoWriter(tmp_path / "c.mp4", 10).close()
    assert os.listdir(tmp_path) == []


def test_image_folder_and_pattern(clip, tmp_path):
    # A folder (natural order: 2 before 10), a printf pattern and a glob give the
    # same frames, lossless, timed index / fps; an unreadable file is skipped and
    # reported, a size change is an error naming the file.
    for k in range(12):
        Image.fromarray(clip.frames[k]).save(tmp_path / f"f{k}.png")
    source, frames, logged = _read(str(tmp_path), fps=10)
    assert source.info.kind == "images" and source.info.frame_count == 12
    assert [f.index for f in frames] == list(range(12))
    assert all(np.array_equal(f.rgb, clip.frames[k]) for k, f in enumerate(frames))
    assert frames[3].timestamp_s == pytest.approx(0.3)
    assert len(_read(str(tmp_path / "f%d.png"))[1]) == 12
    assert len(_read(str(tmp_path / "f*.png"), max_frames=4)[1]) == 4
    (tmp_path / "f12.png").write_bytes(b"broken")
    source, frames, logged = _read(str(tmp_path))
    assert len(frames) == 12 and source.skipped == [str(tmp_path / "f12.png")]
    assert "f12.png: skipped" in logged[0]
    Image.fromarray(clip.frames[0][:100]).save(tmp_path / "f13.png")
    with pytest.raises(SourceError, match="f13.png: 400x100 image in a sequence of 400x240"):
        _read(str(tmp_path))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_http_stream(clip_mp4, tmp_path):
    # A URL source through FFmpeg's network input (a local HTTP server): frames read;
    # a stream cut short reports its end with the frames done.
    data = clip_mp4.read_bytes()
    (tmp_path / "clip.mp4").write_bytes(data)
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.5)])
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        source, frames, logged = _read(f"{url}/clip.mp4")
        assert source.info.kind == "stream" and len(frames) == 60
        assert "ended after 60 frame(s)" in source.problem
        source, frames, logged = _read(f"{url}/cut.mp4")
        assert 0 < len(frames) < 60 and logged
        assert f"stopped after {len(frames)} frame(s)" in source.problem or \
            f"ended after {len(frames)} frame(s)" in source.problem
        with pytest.raises(SourceError, match="missing.mp4"):
            open_source(f"{url}/missing.mp4")
    finally:
        server.shutdown()
        server.server_close()


def test_batched_keeps_order():
    items = [Frame(i, i / 10, None) for i in range(7)]
    batches = list(batched(iter(items), 3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [f.index for b in batches for f in b] == list(range(7))
    with pytest.raises(ValueError):
        list(batched(items, 0))


def test_progress_rate_and_eta():
    # A line per ``every_s`` with done/total, rate over the run and ETA; unknown total:
    # no ETA; close() prints the final line.
    now = [0.0]
    lines = []
    progress = Progress(total=10, every_s=1.0, log=lines.append, clock=lambda: now[0])
    for _ in range(5):
        now[0] += 0.5
        progress.update()
    progress.close()
    assert lines == ["2/10 frames (20%), 2.0 frames/s, elapsed 0:00:01, ETA 0:00:04",
                     "4/10 frames (40%), 2.0 frames/s, elapsed 0:00:02, ETA 0:00:03",
                     "5/10 frames (50%), 2.0 frames/s, elapsed 0:00:02, ETA 0:00:02"]
    live = Progress(total=None, log=lines.append, clock=lambda: now[0])
    now[0] += 4.0
    live.update(8)
    live.close()
    assert lines[-1] == "8 frames, 2.0 frames/s, elapsed 0:00:04"


def test_frame_record_is_json():
    person = {"box": [1.0, 2.0, 30.0, 40.0], "score": 0.81234, "box_score": None,
              "keypoints": np.array([[5.0, 6.0, 0.9], [np.nan, 1.0, 0.0]]), "track_id": 3}
    record = frame_record(4, 0.26666, [person], scale=(2.0, 2.0))
    assert json.loads(json.dumps(record)) == {
        "frame": 4, "time_s": 0.2667, "persons": [{
            "track_id": 3, "box": [2.0, 4.0, 60.0, 80.0], "score": 0.8123, "box_score": None,
            "keypoints": [[10.0, 12.0, 0.9], [None, 2.0, 0.0]]}]}


def test_pipeline_pieces_fit_together(clip, clip_mp4, tmp_path):
    # Source -> batches -> tracker -> smoother -> JSON Lines + annotated video, as the
    # CLI will chain them (ground truth as detections instead of a model): one record
    # per frame in order, the same 4 ids throughout, the video as long as the input.
    from prtr_tf.inference.smoothing import PoseSmoother
    from prtr_tf.inference.synthetic_clip import detections
    from prtr_tf.inference.tracking import PoseTracker, track_color

    dets, _ = detections(clip.gt, 1.0, rng=np.random.default_rng(0))
    tracker, smoother = PoseTracker(), PoseSmoother()
    with open_source(str(clip_mp4)) as source, \
            VideoWriter(tmp_path / "out.mp4", source.info.fps) as out, \
            JsonlWriter(tmp_path / "out.jsonl") as log:
        for batch in batched(source, 4):
            for index, t, rgb in batch:
                persons = smoother.update(tracker.update(dets[index], (rgb.shape[1],
                                                                       rgb.shape[0])), t)
                smoother.forget(tracker.removed_ids)
                canvas = rgb.copy()
                for p in persons:   # a coloured square per person (drawing comes later)
                    x, y = (int(v) for v in np.clip(p["box"][:2], 0, [390, 230]))
                    canvas[y:y + 10, x:x + 10] = track_color(p["track_id"])
                out.write(canvas)
                log.write(frame_record(index, t, persons))
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(60))
    assert {p["track_id"] for r in records for p in r["persons"]} == {1, 2, 3, 4}
    assert len(_read(str(tmp_path / "out.mp4"))[1]) == 60
