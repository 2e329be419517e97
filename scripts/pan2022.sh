#!/usr/bin/env bash
# Pan et al., ACL 2022 (unimodal self-supervised front-ends for AVSR): a wav2vec 2.0 audio
# front-end and a MoCo v2 ResNet-50 visual front-end trained on LRW words, fused in one
# sentence-level model on LRS2 with their freeze schedule (wav2vec 2.0 frozen for 40 epochs).
#
#   stage 1  word classification on LRW from MoCo v2 weights   lrw_moco_resnet50
#   stage 2  export of its video front-end                     python -m avsr.export_frontend
#   stage 3  audio-visual sentence-level training: wav2vec 2.0 pan2022_lrs2
#            (public checkpoint) + stage 2's front-end
#   stage 4  WER (beam 5, CTC 0.1, as their HYBRID decoding)   python -m avsr.evaluate
#
#   scripts/pan2022.sh --data-root /data --out exp/pan2022
#   scripts/pan2022.sh --synthetic true --out exp/pan_synth   # CPU twin: synth_words, synth_pan
#
# Options (defaults in brackets):
#   --stage N --stop-stage M   run stages N..M [1..100]
#   --out DIR                  one folder per stage under DIR [exp/pan2022]
#   --data-root DIR            folder holding lrs2/, lrw/ and pretrained/ (paths.data_dir); with
#                              --synthetic, the synthetic corpus root [data/synthetic/grid]
#   --wav2vec2 FILE            wav2vec 2.0 Large LV-60k [<data-root>/pretrained/wav2vec_vox_new.pt]
#   --synthetic true|false     the twin: synth_words -> synth_pan (no wav2vec 2.0)
#   --data-override "K=V ..."  Hydra data overrides for the sentence-level stage
#   --word-args, --av-args, --eval-args "K=V ..."  per-stage overrides
#   --python PATH              the interpreter [$PYTHON or python]
#   --dry-run                  print the commands, run nothing
#   -- K=V ...                 Hydra overrides for every training stage
# A finished stage (summary.json, the exported file, wer.json) is skipped; an interrupted
# training stage resumes from its checkpoints/last.ckpt. Delete a stage's folder to redo it.
# Differs from the paper: their second stage (separate audio-only and video-only models whose
# front-ends and encoders seed the audio-visual one) is left out: stage 3 starts from the
# front-ends themselves.

wav2vec2=""
synthetic=false
data_root=""
data_override=""
word_args=""
av_args=""
eval_args=""
. "$(dirname "$0")/lib/pipeline.sh"
out=exp/pan2022
parse_options "$@"

data=()
frontend=$out/2_frontend/video_frontend.pt
video_init="{format: weights, path: '$frontend', target: video_frontend}"
if [ "$synthetic" = true ]; then
    words=(+experiment=synth_words)
    av=(+experiment=synth_pan "init=[$video_init]")
    [ -n "$data_root" ] && data+=("data.corpus.root=$data_root")
    decode=(decode=greedy)
else
    words=(+experiment=lrw_moco_resnet50)
    wav2vec2=${wav2vec2:-${data_root:-data}/pretrained/wav2vec_vox_new.pt}
    av=(+experiment=pan2022_lrs2 "init=[{format: wav2vec2, path: '$wav2vec2'}, $video_init]")
    [ -n "$data_root" ] && data+=("paths.data_dir=$data_root")
    decode=(decode.beam.beam_size=5 decode.beam.ctc_weight=0.1 decode.beam.penalty=0.0)
fi
read -r -a extra_data <<< "$data_override"
read -r -a word_args <<< "$word_args"
read -r -a av_args <<< "$av_args"
read -r -a eval_args <<< "$eval_args"

if stage_selected 1 "word-level visual front-end"; then
    train_stage "$out/1_words" "${words[@]}" "${data[@]}" "${word_args[@]}"
fi

if stage_selected 2 "export of the video front-end"; then
    require "$out/1_words/checkpoints/last.ckpt" 1 "word-level visual front-end"
    if not_done "$frontend"; then
        run "$python" -m avsr.export_frontend "ckpt=$out/1_words/checkpoints/last.ckpt" \
            "out=$frontend"
    fi
fi

if stage_selected 3 "audio-visual sentence-level training"; then
    require "$frontend" 2 "export of the video front-end"
    [ "$synthetic" = true ] || [ "$dry_run" = true ] || [ -e "$wav2vec2" ] || \
        die "$wav2vec2: no wav2vec 2.0 checkpoint (fairseq's wav2vec_vox_new.pt; --wav2vec2 FILE)"
    train_stage "$out/3_av" "${av[@]}" evaluate=false "${data[@]}" "${extra_data[@]}" \
        "${av_args[@]}"
fi

if stage_selected 4 "evaluation"; then
    require "$out/3_av/checkpoints/last.ckpt" 3 "audio-visual sentence-level training"
    evaluate_stage "$out/4_eval" "$out/3_av/checkpoints/last.ckpt" "${decode[@]}" \
        "${eval_args[@]}"
fi
