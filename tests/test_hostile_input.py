"""Hostile input: files a user is given run no code, and preparation writes nothing outside
its output folder (issue 20, items 1-3).

Part 1, checkpoints. Every user-facing loading path refuses a pickle that would run code, and
every path that builds objects from a stored config refuses a target outside the allow-list.
The payload writes a marker file when unpickled; each test asserts the refusal names the file
and that the marker was never written.

Part 2, preparation. Every preparation source of ``python -m avsr.prepare`` (the LRS2 list
files, the LRS3 and VoxCeleb2 trees, the VoxCeleb2 id list, ``manifests`` with its validation
list, subsets and ``index.tsv``) is given an id or a tree that escapes its root. The command
must stop with an error naming the list file and line (or the path found), and the whole
temporary tree outside the output folder must be byte-for-byte what it was before.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from conftest import SENTENCES, tiny_overrides, write_clip, write_lrs3_txt
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from avsr.checkpoints import (
    UnsafeCheckpointError,
    UnsafeConfigError,
    check_stored_config,
    read_checkpoint,
)
from avsr.data.corpora import Utterance
from avsr.prepare import mean_face
from avsr.prepare.__main__ import main

REPO = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this calls ``os.system`` (what an attacker's checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def run(tiny_synth_root, tmp_path_factory) -> dict:
    """A real one-step run: its checkpoint, config and model state."""
    from avsr.train import train

    out = tmp_path_factory.mktemp("run")
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=synth_grid", "debug=fdr", "evaluate=false",
                                          *tiny_overrides(tiny_synth_root, out)])
    train(cfg)
    ckpt = out / "checkpoints" / "last.ckpt"
    return {"ckpt": ckpt, "checkpoint": torch.load(ckpt, weights_only=True), "root": tiny_synth_root}


@pytest.fixture()
def evil(run, tmp_path) -> tuple[Path, Path]:
    """The real checkpoint with a payload added beside its weights."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.ckpt"
    torch.save({**run["checkpoint"], "payload": _Payload(marker)}, path)
    return path, marker


def _clip(tmp_path: Path) -> Path:
    clip = tmp_path / "clip.mp4"
    write_clip(clip, num_frames=12)
    return clip


def _decode_cfg():
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("evaluate", overrides=["ckpt=x", "decode=greedy"]).decode


def _loading_paths(tmp_path: Path, run: dict):
    """Every user-facing way a file becomes weights: name -> callable(path)."""
    from avsr.average_checkpoints import average_checkpoints
    from avsr.evaluate import evaluate_checkpoint
    from avsr.export_frontend import export_frontend
    from avsr.checkpoints.weights import apply_init
    from avsr.ssl.features import layer_features
    from avsr.checkpoints import load_lm_checkpoint
    from avsr.transcribe import transcribe

    def evaluate(path):
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
            cfg = compose("evaluate", overrides=["ckpt=x", "eval.limit=1", "decode=greedy"])
        evaluate_checkpoint(path, cfg.eval, cfg.decode, tmp_path / "eval")

    def model():
        from avsr.checkpoints import load_run

        return load_run(run["ckpt"]).model

    utt = Utterance("u", str(_clip(tmp_path)), str(_clip(tmp_path)), "", None)
    return {
        "avsr.evaluate": evaluate,
        "avsr.transcribe": lambda p: transcribe(p, _clip(tmp_path), "video", _decode_cfg()),
        "avsr.average_checkpoints": lambda p: average_checkpoints([p, p], tmp_path / "avg.ckpt"),
        "avsr.export_frontend": lambda p: export_frontend(p, tmp_path / "front.pt"),
        "init (weights)": lambda p: apply_init(model(), [{
            "path": str(p), "format": "weights", "target": "video_frontend",
            "prefix": "model.video_frontend."}]),
        "init (avsr)": lambda p: apply_init(model(), [{"path": str(p), "modules": ["encoder"]}]),
        "decode.lm_ckpt": load_lm_checkpoint,
        "ssl.features": lambda p: list(layer_features(p, [utt], layer=1)),
    }


def test_every_loading_path_refuses_a_code_payload(run, evil, tmp_path):
    path, marker = evil
    for name, load in _loading_paths(tmp_path, run).items():
        with pytest.raises(UnsafeCheckpointError, match=str(path)):
            load(path)
        assert not marker.exists(), f"{name} ran the payload"
    assert not (tmp_path / "avg.ckpt").exists() and not (tmp_path / "front.pt").exists()


def test_importers_read_foreign_pickles_as_inert_stubs(run, evil):
    from avsr.convert import import_checkpoint
    from avsr.checkpoints import load_run

    path, marker = evil
    with pytest.raises(Exception):  # noqa: B017 - not a USR checkpoint; what matters: no code
        import_checkpoint(load_run(run["ckpt"]).model, format="usr", path=str(path))
    # the same through a run's init list: the released formats read foreign pickles inertly
    from avsr.checkpoints.weights import apply_init

    with pytest.raises(Exception):  # noqa: B017
        apply_init(load_run(run["ckpt"]).model, [{"path": str(path), "format": "usr"}])
    assert not marker.exists()
    loaded = read_checkpoint(path, foreign=True)
    assert type(loaded["payload"]).__name__ == "system"  # an inert record of posix.system
    assert not marker.exists()


def test_resume_refuses_a_code_payload(run, evil, tmp_path):
    """``ckpt_path=`` resume goes through Lightning's own loader (``weights_only``)."""
    from avsr.train import train

    path, marker = evil
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=synth_grid", "debug=fdr", "evaluate=false",
                                          *tiny_overrides(run["root"], tmp_path / "resume"),
                                          f"ckpt_path={path}"])
    with pytest.raises(Exception, match="Weights only load failed"):  # noqa: B017
        train(cfg)
    assert not marker.exists()


def test_stored_config_cannot_name_a_loader(run, tmp_path):
    """A checkpoint that passes ``weights_only`` but whose config says
    ``model._target_: torch.load`` of a second, unsafe pickle."""
    marker = tmp_path / "PWNED"
    second = tmp_path / "second.pt"
    torch.save(_Payload(marker), second)
    checkpoint = dict(run["checkpoint"])
    config = dict(checkpoint["avsr_config"])
    config["model"] = {"_target_": "torch.load", "f": str(second), "weights_only": False}
    checkpoint["avsr_config"] = config
    path = tmp_path / "config_attack.ckpt"
    torch.save(checkpoint, path)
    lm_path = tmp_path / "lm.pt"
    torch.save({"lm_config": {"_target_": "torch.load", "f": str(second),
                              "weights_only": False}, "state_dict": {}}, lm_path)
    for name, load in _loading_paths(tmp_path, run).items():
        if name in ("avsr.average_checkpoints", "avsr.export_frontend", "init (weights)",
                    "init (avsr)"):
            continue  # these read tensors only; nothing of the config is built
        target = lm_path if name == "decode.lm_ckpt" else path
        with pytest.raises(UnsafeConfigError, match="torch.load"):
            load(target)
        assert not marker.exists(), f"{name} ran the payload"


@pytest.mark.parametrize("target", ["os.system", "builtins.eval", "torch.load",
                                    "avsr.data.synthetic.generate_corpus",
                                    "avsr.evaluate.evaluate_checkpoint", "torch.nn.Module.apply",
                                    "subprocess.Popen", "avsr.models.nonexistent.Thing"])
def test_allow_list_refuses(target):
    with pytest.raises(UnsafeConfigError, match="refused"):
        check_stored_config({"model": {"encoder": {"_target_": target}}}, "x.ckpt")


def test_allow_list_accepts_every_model_and_data_config_of_the_recipes():
    """Every experiment's model and data node (what a run checkpoint stores) passes."""
    experiments = sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml"))
    assert experiments
    for name in experiments:
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
            cfg = compose("train", overrides=[f"+experiment={name}"])
        for node in ("model", "data"):
            check_stored_config(OmegaConf.to_container(cfg[node], resolve=False),
                                f"{name}: {node}")


# ------------------------------------------------------------------- part 2: preparation

def _raw(video: Path, landmarks: Path, text: str = SENTENCES[0], frames: int = 10) -> None:
    """A raw clip that prepares successfully: video, transcript and a landmark per frame."""
    write_clip(video, frames)
    write_lrs3_txt(video.with_suffix(".txt"), text, frames)
    landmarks.parent.mkdir(parents=True, exist_ok=True)
    landmarks.write_bytes(pickle.dumps([mean_face()] * frames))


def _snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    """Every path under ``root`` except those under ``skip``: folders, and the size, mtime and
    link target of everything else."""
    state = {}
    for folder, dirs, files in os.walk(root):  # links are listed, never followed
        for name in dirs + files:
            p = Path(folder) / name
            if p == skip or skip in p.parents:
                continue
            st = p.lstat()
            link = os.readlink(p) if p.is_symlink() else None
            if p.is_dir() and not link:  # a folder changes when --out is made in it: fine
                state[str(p.relative_to(root))] = ("dir",)
            else:
                state[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, link)
    return state


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """``a/raw`` (LRS2, LRS3 and VoxCeleb2 layouts side by side), ``a/lm``, ``a/out`` and an
    ``outside`` folder next to them holding a clip that the hostile ids point at."""
    a = tmp_path / "a"
    paths = {"tmp": tmp_path, "raw": a / "raw", "lm": a / "lm", "out": a / "out",
             "outside": tmp_path / "x"}
    # LRS2: one good clip in main/ and pretrain/, every list file present
    _raw(a / "raw/main/5535415699068794046/00001.mp4", a / "lm/main/5535415699068794046/00001.pkl")
    _raw(a / "raw/pretrain/5535415699068794046/00002.mp4",
         a / "lm/pretrain/5535415699068794046/00002.pkl")
    for split in ("train", "val", "test"):
        (a / f"raw/{split}.txt").write_text("5535415699068794046/00001 NF\n")
    (a / "raw/pretrain.txt").write_text("5535415699068794046/00002\n")
    # LRS3 and VoxCeleb2 trees (the same raw root: their split folders differ from LRS2's)
    _raw(a / "raw/trainval/spk001/00001.mp4", a / "lm/trainval/spk001/00001.pkl")
    _raw(a / "raw/dev/mp4/id00012/21Uxsk56VDQ/00001.mp4",
         a / "lm/dev/mp4/id00012/21Uxsk56VDQ/00001.pkl")
    # the target: src/main/../../../x/00001 is this clip; out/main/../../../x/00001 is it too
    _raw(tmp_path / "x/00001.mp4", tmp_path / "x/00001.pkl")
    return paths


def _crop(t: dict[str, Path], corpus: str, *extra: str) -> list[str]:
    return ["crop", "--corpus", corpus, "--src", str(t["raw"]), "--out", str(t["out"]),
            "--landmarks", str(t["lm"]), *extra]


def _refused(argv: list[str], t: dict[str, Path], *expected: str) -> str:
    """Run the CLI, expect it to stop, check nothing outside ``out`` changed; the message."""
    before = _snapshot(t["tmp"], t["out"])
    message = None
    try:
        main(argv)
    except SystemExit as stop:
        message = str(stop.code)
    finally:  # judged first, whatever happened: the damage is what matters
        after = _snapshot(t["tmp"], t["out"])
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert not changed, f"written outside --out: {changed}"
    assert message is not None, "the command did not stop"
    for text in expected:
        assert text in message, message
    return message


@pytest.mark.parametrize("line", [
    "../../../x/00001",                  # the reported case: overwrites the source clip
    "5535415699068794046/../../../../x/00001",
    "{tmp}/x/00001",                     # absolute
    "..\\..\\..\\x\\00001",              # Windows separators
    "5535415699068794046//00001",        # empty component
    "./5535415699068794046/00001",
])
@pytest.mark.parametrize("split", ["test", "pretrain"])
def test_lrs2_list_lines_that_escape_are_refused_with_file_and_line(tree, line, split):
    listing = tree["raw"] / f"{split}.txt"
    first = listing.read_text()
    listing.write_text(first + "\n" + line.format(tmp=tree["tmp"]) + " NF\n")  # line 3
    _refused(_crop(tree, "lrs2", "--splits", split), tree, f"{listing}:3", "unsafe id")


def test_lrs2_id_through_a_symlinked_folder_is_refused(tree):
    os.symlink(tree["outside"], tree["raw"] / "main/evil")
    (tree["raw"] / "test.txt").write_text("5535415699068794046/00001\nevil/00001\n")
    _refused(_crop(tree, "lrs2", "--splits", "test"), tree,
             f"{tree['raw'] / 'test.txt'}:2", "symbolic link")


def test_lrs3_speaker_folder_linked_outside_is_refused(tree):
    os.symlink(tree["outside"], tree["raw"] / "trainval/spk666")
    _refused(_crop(tree, "lrs3", "--splits", "trainval"), tree, "spk666", "symbolic link")


def test_vox2_id_list_and_split_escapes_are_refused(tree):
    ids = tree["tmp"] / "vox-en.id"
    ids.write_text("id00012/21Uxsk56VDQ/00001\n/etc/passwd\n")
    _refused(_crop(tree, "vox2", "--id-list", str(ids)), tree, f"{ids}:2", "absolute")
    # a split is a folder name: "../.." would glob (and write) outside
    (tree["tmp"] / "a/x/mp4/id1/v").mkdir(parents=True)
    _raw(tree["tmp"] / "a/x/mp4/id1/v/00001.mp4", tree["lm"] / "../x/mp4/id1/v/00001.pkl")
    with pytest.raises(ValueError, match="VoxCeleb2 splits"):
        main(_crop(tree, "vox2", "--splits", "../x"))
    assert not (tree["tmp"] / "a/x/mp4/id1/v/00001.wav").exists()


def test_a_link_inside_out_is_caught_by_the_pipeline(tree):
    """The sources are clean; ``out/trainval`` itself leads outside: the last line of defence."""
    tree["out"].mkdir(parents=True)
    os.symlink(tree["outside"], tree["out"] / "trainval")
    message = _refused(_crop(tree, "lrs3", "--splits", "trainval"), tree, "outside --out")
    assert "trainval/spk001/00001" in message


def _prepared(tree: dict[str, Path]) -> Path:
    main(_crop(tree, "lrs3", "--splits", "trainval"))
    assert (tree["out"] / "trainval/spk001/00001.mp4").is_file()
    return tree["out"]


def test_manifests_refuse_escaping_val_ids_index_ids_and_subsets(tree):
    prepared = _prepared(tree)
    manifests = tree["tmp"] / "a/manifests"
    args = ["manifests", "--lrs3", str(prepared), "--out", str(manifests)]
    val = tree["tmp"] / "val.txt"
    val.write_text("trainval/spk001/00001\n\n../../x/00001\n")
    t = {**tree, "out": manifests}  # manifests may write only under their --out
    _refused([*args, "--val-list", str(val)], t, f"{val}:3", "unsafe id")
    # a subset names a folder: refused before any folder is made
    before = _snapshot(tree["tmp"], manifests)
    with pytest.raises(ValueError, match="subsets must be among"):
        main([*args, "--subsets", "../../evil"])
    assert _snapshot(tree["tmp"], manifests) == before
    assert not (tree["tmp"] / "evil").exists()
    # index.tsv is read back as a list of ids too
    index = prepared / "index.tsv"
    index.write_text(index.read_text() + "../../x/00001\ttrainval\t10\t6400\tBIN RED\n")
    _refused(args, t, f"{index}:3", "'..'")


def test_clean_ids_still_prepare(tree):
    """The checks refuse nothing legitimate: every split of the good lists is prepared."""
    _raw(tree["raw"] / "main/6330311066473698535/00011.mp4",
         tree["lm"] / "main/6330311066473698535/00011.pkl")
    (tree["raw"] / "test.txt").write_text("5535415699068794046/00001 NF\n\n"
                                          "6330311066473698535/00011 MV\n")
    main(_crop(tree, "lrs2"))
    for rel in ("main/5535415699068794046/00001", "main/6330311066473698535/00011",
                "pretrain/5535415699068794046/00002"):
        assert (tree["out"] / f"{rel}.mp4").is_file(), rel
