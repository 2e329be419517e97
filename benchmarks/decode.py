"""Beam-search speed: our batched joint CTC/attention search against ESPnet's BatchBeamSearch.

    OMP_NUM_THREADS=1 python benchmarks/decode.py --ckpt logs/synth_grid/checkpoints/last.ckpt \
        --utterances 32 --beams 10 40 [--modality video] [--ctc-weight 0.1] [--repeats 3]

Both searches decode the same encoder outputs of the first N test utterances of the
checkpoint's corpus with the same weights (decoder 1 - ctc_weight, CTC ctc_weight, pre-beam 1.5 ×
beam by the full score, maxlenratio 0 + end detection). ESPnet (``pip install -e .[bench]``)
gets our decoder wrapped as an ESPnet ``BatchScorerInterface`` that follows ESPnet's own
Transformer decoder step (it caches layer outputs and re-projects the prefix keys/values and
the memory every step), our CTC head through ESPnet's ``CTCPrefixScorer``, and one utterance
per call, as ESPnet2 requires. Each (search, beam) runs in a fresh subprocess so that its peak
RSS is its own; the encoder is not timed. Wall time and process CPU time are both reported
(best of ``--repeats``): on a shared machine the two searches, run minutes apart, can see very
different loads, and CPU time is far less sensitive to that than wall time. The script exits
non-zero if any best hypothesis differs.

``--device cuda`` runs both searches (and the model) on that device, synchronising it before
and after each timed run; peak memory is then ``torch.cuda.max_memory_allocated``.

``--synthetic N [N ...]`` needs no checkpoint and no corpus (a GPU machine has neither): the
model is the ``+experiment=synth_grid`` one with random weights (seed 0, rebuilt identically in
every worker), and each of max(N) utterances gets an encoder length drawn uniformly from
50-150 frames (LRS3 test lengths at 25 Hz; fixed seed), random encoder outputs, and CTC
posteriors made "peaked" on a random token sequence of length frames // 4: every token gets an
equal share of the frames, its first half carries the token, the rest blank, and that path's
logits get +6 over unit Gaussian noise. The tokens are drawn from 12 of the 128 (ids 3-14)
and the untrained decoder is made to "agree": its final layer norm is scaled by 0.05 (nearly
flat output) and its output bias is +4 on those 12 and on <eos>, 0 elsewhere. Both searches
pre-select 1.5 x beam candidates by the decoder score before the CTC prefix scores them (as
ESPnet does), so a decoder that favours the right tokens is what lets the CTC posteriors steer
the search to the planted sequence of realistic length (the share found is reported); random
weights alone make the decoder confidently prefer random tokens and the hypotheses 3x too
long. Every decoder step and CTC prefix score is still computed in full, on real shapes.
Ours decodes the first N utterances for each N; ESPnet decodes the first
``--espnet-utterances`` (default: all) and its time for larger N is extrapolated
linearly (marked ``extrapolated``), since it decodes one utterance at a time. Hypotheses are
compared on the utterances both decoded. ``--json`` writes every row.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avsr.decoding.beam_search import BeamSearch  # noqa: E402
from avsr.evaluate import load_model_from_checkpoint  # noqa: E402


def _load_model(ckpt: str):
    """The checkpoint's model; if its front-end buffers no longer match the code (a front-end
    changed after training), load leniently: only the decoder and CTC head must match, they are
    what is timed (use --modality video so the encoder outputs are unaffected)."""
    try:
        return load_model_from_checkpoint(ckpt)[0]
    except ValueError as e:
        from omegaconf import OmegaConf

        from avsr.checkpoints import instantiate_stored, read_checkpoint

        checkpoint = read_checkpoint(ckpt)
        model = instantiate_stored(OmegaConf.create(checkpoint["avsr_config"]).model, ckpt)
        state = {k[len("model."):]: v for k, v in checkpoint["state_dict"].items()
                 if k.startswith("model.")}
        missing, _ = model.load_state_dict(state, strict=False)
        if any(k.startswith(("decoder.", "ctc.", "encoder.", "video_frontend.")) for k in missing):
            raise
        print(f"warning: lenient checkpoint load ({e})", file=sys.stderr)
        return model.eval()


_EOS = 2  # avsr.data.tokenizer.EOS_ID (asserted in _synthesize)
_SYNTH_TOKENS = range(3, 15)  # the synthetic utterances' tokens: 12, none special


def _synthetic_model():
    """The synth_grid model with random weights: identical in every process (seed 0)."""
    import hydra
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[
            "+experiment=synth_grid", "vocab_size=128",
            f"paths.output_dir={Path(tempfile.gettempdir()) / 'avsr_bench'}"])
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model).eval()
    with torch.no_grad():  # a decoder that agrees with the synthetic posteriors (docstring)
        model.decoder.layer_norm.weight.mul_(0.05)
        model.decoder.layer_norm.bias.mul_(0.05)
        model.decoder.output_projection.bias.zero_()
        model.decoder.output_projection.bias[list(_SYNTH_TOKENS) + [_EOS]] = 4.0
    return model


@torch.inference_mode()
def _synthesize(n: int, out: Path, seed: int = 0, frames: tuple[int, int] = (50, 150)) -> None:
    """``n`` utterances of peaked synthetic CTC posteriors (see the module docstring)."""
    from avsr.data.tokenizer import BLANK_ID, EOS_ID, UNK_ID

    model = _synthetic_model()
    vocab = model.decoder.vocab_size
    d_model = model.ctc.ctc_lo.in_features
    assert EOS_ID == _EOS and min(_SYNTH_TOKENS) > max(BLANK_ID, EOS_ID, UNK_ID)
    g = torch.Generator().manual_seed(seed)
    items, targets = [], []
    for _ in range(n):
        t = int(torch.randint(frames[0], frames[1] + 1, (1,), generator=g))
        tokens = torch.tensor(list(_SYNTH_TOKENS))[
            torch.randint(len(_SYNTH_TOKENS), (max(1, t // 4),), generator=g)]
        path = torch.full((t,), BLANK_ID)
        bounds = torch.linspace(0, t, len(tokens) + 1).long()
        for k, tok in enumerate(tokens.tolist()):
            a, b = int(bounds[k]), int(bounds[k + 1])
            path[a:a + max(1, (b - a) // 2)] = tok
        logits = torch.randn(t, vocab, generator=g)
        logits[torch.arange(t), path] += 6.0
        enc = torch.randn(t, d_model, generator=g)
        items.append((enc, torch.log_softmax(logits, -1), " ".join(map(str, tokens.tolist()))))
        targets.append(tokens.tolist())
    torch.save({"items": items, "targets": targets, "sos": EOS_ID, "eos": EOS_ID,
                "blank": BLANK_ID}, out)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> None:
    # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


@torch.inference_mode()
def _encode(ckpt: str, n: int, modality: str, out: Path) -> None:
    """Encoder outputs and CTC log-probs of the first ``n`` clean test utterances."""
    import hydra
    from omegaconf import OmegaConf

    from avsr.checkpoints import read_checkpoint

    model = _load_model(ckpt)
    cfg = OmegaConf.create(read_checkpoint(ckpt)["avsr_config"])
    dm = hydra.utils.instantiate(cfg.data)
    tok = dm.load_tokenizer()
    dm.setup("test")
    items = []
    for batch in dm.test_dataloader_for(None, None):
        audio = batch["audio"] if modality != "video" else None
        video = batch["video"] if modality != "audio" else None
        enc, lengths = model.encode_modality(audio, batch["audio_lengths"], video,
                                             batch["video_lengths"], modality=modality)
        ctc = model.ctc(enc)
        for b in range(enc.shape[0]):
            t = int(lengths[b])
            items.append((enc[b, :t].clone(), ctc[b, :t].clone(), batch["texts"][b]))
        if len(items) >= n:
            break
    torch.save({"items": items[:n], "sos": tok.sos_id, "eos": tok.eos_id, "blank": tok.blank_id},
               out)


def _pad(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([t.shape[0] for t in tensors])
    return torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True), lengths


def _run_ours(model, data, beam: int, ctc_weight: float, batch_size: int):
    search = BeamSearch(beam_size=beam, ctc_weight=ctc_weight)
    items = data["items"]
    hyps = []
    for i in range(0, len(items), batch_size):
        enc, lengths = _pad([e for e, _, _ in items[i:i + batch_size]])
        ctc, _ = _pad([c for _, c, _ in items[i:i + batch_size]])
        for h in search(model.decoder, enc, lengths, ctc, data["sos"], data["eos"],
                        data["blank"]):
            hyps.append((list(map(int, h[0].tokens)), float(h[0].score)) if h
                        else ([], float("-inf")))
    return hyps


def _espnet_scorers(model):
    """Our decoder and CTC head behind ESPnet's scorer interfaces, stepping like ESPnet."""
    from espnet.nets.scorer_interface import BatchScorerInterface

    decoder = model.decoder

    class EspnetStyleDecoder(BatchScorerInterface):
        """ESPnet's ``TransformerDecoder.batch_score`` / ``forward_one_step`` on our weights."""

        def init_state(self, x):
            return None

        def score(self, ys, state, x):
            logp, states = self.batch_score(ys.unsqueeze(0), [state], x.unsqueeze(0))
            return logp.squeeze(0), states[0]

        def batch_score(self, ys, states, xs):
            n_layers = len(decoder.layers)
            cache = (None if states[0] is None else
                     [torch.stack([s[i] for s in states]) for i in range(n_layers)])
            x = decoder.embed_positions(decoder.embed_tokens(ys))  # the whole prefix, each step
            new_cache = []
            for i, layer in enumerate(decoder.layers):
                h = layer.self_attn_layer_norm(x)
                attn = layer.self_attn
                if cache is None:
                    q, k, v = attn.project_qkv(h)
                    x = x + attn.attend(q, k, v, is_causal=x.shape[1] > 1)
                else:
                    q = attn.project_q(h[:, -1:])
                    k, v = attn.project_kv(h)  # prefix keys/values re-projected every step
                    x = x[:, -1:] + attn.attend(q, k, v)
                q = layer.encoder_attn.project_q(layer.encoder_attn_layer_norm(x))
                mk, mv = layer.encoder_attn.project_kv(xs)  # memory projected every step
                x = x + layer.encoder_attn.attend(q, mk, mv)
                x = layer._ffn(x)
                if cache is not None:
                    x = torch.cat([cache[i], x], dim=1)
                new_cache.append(x)
            logits = decoder.output_projection(decoder.layer_norm(x[:, -1]))
            logp = torch.log_softmax(logits.float(), dim=-1)
            return logp, [[c[b] for c in new_cache] for b in range(len(ys))]

    class CTCModule:
        """The stored CTC log-probs of the utterance being decoded (``current``), the very
        ones our search gets; ``model.ctc(x)`` when none is set."""

        current = None

        def log_softmax(self, x):
            return self.current.unsqueeze(0) if self.current is not None else model.ctc(x)

    return EspnetStyleDecoder(), CTCModule()


def _run_espnet(model, data, beam: int, ctc_weight: float):
    from espnet.nets.batch_beam_search import BatchBeamSearch
    from espnet.nets.scorers.ctc import CTCPrefixScorer
    from espnet.nets.scorers.length_bonus import LengthBonus

    logging.getLogger("espnet").setLevel(logging.WARNING)
    logging.disable(logging.INFO)
    vocab = model.decoder.vocab_size
    dec, ctc = _espnet_scorers(model)
    search = BatchBeamSearch(
        scorers={"decoder": dec, "ctc": CTCPrefixScorer(ctc, data["eos"]),  # type: ignore
                 "length_bonus": LengthBonus(vocab)},
        weights={"decoder": 1.0 - ctc_weight, "ctc": ctc_weight, "length_bonus": 0.0},
        beam_size=beam, vocab_size=vocab, sos=data["sos"], eos=data["eos"],
        pre_beam_score_key="full")
    hyps = []
    for enc, ctc_log_probs, _ in data["items"]:
        ctc.current = ctc_log_probs
        nbest = search(x=enc, maxlenratio=0.0, minlenratio=0.0)
        hyps.append((nbest[0].yseq[1:-1].tolist(), float(nbest[0].score)) if nbest
                    else ([], float("-inf")))
    return hyps


@torch.inference_mode()
def _worker(args) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = (_synthetic_model() if args.ckpt == "synthetic" else _load_model(args.ckpt))
    model.to(device)
    data = torch.load(args.data, weights_only=True)
    data["items"] = [(e.to(device), c.to(device), t) for e, c, t in data["items"]]
    run = {"ours": lambda d, b: _run_ours(model, d, b, args.ctc_weight, args.batch_size),
           "espnet": lambda d, b: _run_espnet(model, d, b, args.ctc_weight)}[args.worker]
    sizes = args.sizes or [len(data["items"])]
    run(dict(data, items=data["items"][:2]), args.worker_beam)  # warm-up on two utterances
    _sync(device)
    _reset_peak_rss()
    base = _status_mib("VmRSS")
    rows = []
    for size in sizes:
        part = dict(data, items=data["items"][:size])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        walls, cpus = [], []
        for _ in range(args.repeats):  # the best of several: the CPU is shared
            _sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            hyps = run(part, args.worker_beam)
            _sync(device)
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - start_cpu)
        wall, cpu = min(walls), min(cpus)
        rows.append({"utterances": size, "wall_s": wall, "utt_per_s": size / wall, "cpu_s": cpu,
                     "utt_per_cpu_s": size / cpu, "peak_rss_mib": _status_mib("VmHWM"),
                     "rss_before_mib": base,
                     "peak_cuda_mib": (torch.cuda.max_memory_allocated(device) / 2**20
                                       if device.type == "cuda" else None)})
    print(json.dumps(dict(rows[-1], rows=rows, hyps=hyps)))


def _call_worker(args, impl: str, beam: int, data_path: Path, sizes: list[int]) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, "--worker-beam", str(beam),
           "--data", str(data_path), "--ckpt", args.ckpt, "--device", args.device,
           "--ctc-weight", str(args.ctc_weight), "--threads", str(args.threads),
           "--batch-size", str(args.batch_size), "--repeats", str(args.repeats),
           "--sizes", *map(str, sizes)]
    out = subprocess.run(cmd, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
    if out.returncode != 0:
        raise RuntimeError(f"{impl} beam {beam} failed ({out.returncode}): {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="logs/synth_grid/checkpoints/last.ckpt")
    parser.add_argument("--utterances", type=int, default=32)
    parser.add_argument("--synthetic", type=int, nargs="+", default=None, metavar="N",
                        help="no checkpoint: peaked synthetic posteriors, first N utterances "
                             "for each N (see the module docstring)")
    parser.add_argument("--frames-range", type=int, nargs=2, default=[50, 150],
                        metavar=("MIN", "MAX"), help="--synthetic encoder lengths (uniform)")
    parser.add_argument("--espnet-utterances", type=int, default=None,
                        help="ESPnet decodes only this many (the first); larger N extrapolated")
    parser.add_argument("--beams", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the fastest counts")
    parser.add_argument("--modality", default="video",
                        choices=["audio", "video", "audiovisual"])
    parser.add_argument("--ctc-weight", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32, help="utterances per batch (ours)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-espnet", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--worker", choices=["ours", "espnet"], help=argparse.SUPPRESS)
    parser.add_argument("--worker-beam", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    torch.set_num_threads(args.threads)
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
              "device": args.device, "ctc_weight": args.ctc_weight, "rows": [],
              "comparisons": []}
    if args.device.startswith("cuda"):
        result["gpu"] = torch.cuda.get_device_name(torch.device(args.device))

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp) / "enc.pt"
        if args.synthetic:
            sizes = sorted(set(args.synthetic))
            args.ckpt = "synthetic"
            _synthesize(sizes[-1], data_path, frames=tuple(args.frames_range))
            source = "synthetic"
        else:
            sizes = [args.utterances]
            _encode(args.ckpt, args.utterances, args.modality, data_path)
            source = f"{args.modality} test"
        data = torch.load(data_path, weights_only=True)
        frames = [e.shape[0] for e, _, _ in data["items"]]
        sizes = [min(n, len(frames)) for n in sizes]
        n_esp = min(args.espnet_utterances or sizes[-1], sizes[-1])
        result.update(utterances=sizes, espnet_utterances=n_esp, encoder_frames={
            "min": min(frames), "max": max(frames), "mean": sum(frames) / len(frames)})
        print(f"{len(frames)} {source} utterances, encoder frames "
              f"{min(frames)}-{max(frames)} (mean {sum(frames) / len(frames):.0f}); "
              f"{args.threads} thread(s), device {args.device}")
        ok = True
        for beam in args.beams:
            res = {"ours": _call_worker(args, "ours", beam, data_path, sizes)}
            if not args.skip_espnet:
                res["espnet"] = _call_worker(args, "espnet", beam, data_path, [n_esp])
            for impl, r in res.items():
                for row in r["rows"]:
                    row = dict(row, beam=beam, impl=impl, extrapolated=False)
                    result["rows"].append(row)
                    mem = (f"peak CUDA {row['peak_cuda_mib']:.0f} MiB" if row["peak_cuda_mib"]
                           is not None else f"peak RSS {row['peak_rss_mib']:.0f} MiB "
                           f"(+{row['peak_rss_mib'] - row['rss_before_mib']:.0f} MiB)")
                    print(f"beam {beam:3d} {impl:7s} {row['utterances']:5d} utt: "
                          f"{row['utt_per_s']:8.2f} utt/s ({row['wall_s']:.2f} s wall, "
                          f"{row['cpu_s']:.2f} s CPU)  {mem}")
            if "espnet" in res:
                esp = res["espnet"]
                for n in sizes:
                    if n > n_esp:  # ESPnet decodes one utterance at a time: linear in n
                        row = {"utterances": n, "beam": beam, "impl": "espnet",
                               "extrapolated": True, "extrapolated_from": n_esp,
                               "wall_s": esp["wall_s"] * n / n_esp, "utt_per_s": esp["utt_per_s"],
                               "cpu_s": esp["cpu_s"] * n / n_esp,
                               "utt_per_cpu_s": esp["utt_per_cpu_s"], "peak_cuda_mib": None}
                        result["rows"].append(row)
                        print(f"beam {beam:3d} espnet  {n:5d} utt: {row['wall_s']:.2f} s wall "
                              f"EXTRAPOLATED from {n_esp} utterances")
                pairs = list(zip(res["ours"]["hyps"][:n_esp], esp["hyps"]))
                same = sum(a[0] == b[0] for a, b in pairs)
                diff = max(abs(a[1] - b[1]) for a, b in pairs)
                cmp = {"beam": beam, "compared": len(pairs), "same_best_hypothesis": same,
                       "max_score_difference": diff,
                       "speedup_wall": res["ours"]["rows"][-1]["utt_per_s"] / esp["utt_per_s"],
                       "speedup_cpu": (res["ours"]["rows"][-1]["utt_per_cpu_s"]
                                       / esp["utt_per_cpu_s"])}
                result["comparisons"].append(cmp)
                print(f"beam {beam:3d}: same best hypothesis {same}/{len(pairs)}, max score "
                      f"difference {diff:.2e}, speed-up {cmp['speedup_wall']:.1f}x wall, "
                      f"{cmp['speedup_cpu']:.1f}x CPU time (ours at {sizes[-1]} utterances, "
                      f"ESPnet at {n_esp})")
                ok &= same == len(pairs)
            if "targets" in data:
                hyps = res["ours"]["hyps"]
                planted = sum(h[0] == t for h, t in zip(hyps, data["targets"]))
                result.setdefault("planted_match", {})[str(beam)] = planted / len(hyps)
                print(f"beam {beam:3d}: {planted}/{len(hyps)} of our hypotheses are the planted "
                      f"sequence")
            save()
        result["identical"] = ok
        save()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
