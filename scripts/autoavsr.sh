#!/usr/bin/env bash
# auto_avsr (Ma et al., ICASSP 2023): supervised training on LRS3 + VoxCeleb2 + the
# automatically transcribed sets, then the WER table.
#
#   stage 1  supervised training (CTC 0.1 + attention 0.9,   autoavsr_lrs3 (AV),
#            babble in training)                             autoavsr_lrs3_vsr, autoavsr_lrs3_asr
#   stage 2  WER, clean and babble (beam 40, CTC 0.1, pre-beam by the decoder score)
#
#   scripts/autoavsr.sh --data-root /data --modality video --out exp/autoavsr_vsr \
#       --train-sets "data=lrs3_vox2 data.train_sets.vox2.labelled=true
#                     data.train_sets.vox2.transcripts=/data/vox2_whisper.txt"
#   scripts/autoavsr.sh --synthetic true --out exp/autoavsr_synth   # the CPU twin (synth_grid)
#
# Options (defaults in brackets):
#   --stage N --stop-stage M   run stages N..M [1..100]
#   --out DIR                  one folder per stage under DIR [exp/autoavsr]
#   --data-root DIR            folder holding lrs3/ (and voxceleb2/...; paths.data_dir); with
#                              --synthetic, the synthetic corpus root [data/synthetic/grid]
#   --modality av|video|audio  the model [av]
#   --train-sets "K=V ..."     the training set as Hydra data overrides [empty: the recipe's,
#                              LRS3 pretrain + trainval (data=lrs3_433h)]. auto_avsr's 3,448 h
#                              are LRS3 pretrain + trainval + VoxCeleb2-en + AVSpeech-en with
#                              Whisper transcripts: parts of data.train_sets (README,
#                              "Training sets as compositions"); no AVSpeech reader exists yet
#   --synthetic true|false     the twin: synth_grid
#   --train-args, --eval-args "K=V ..."  per-stage overrides
#   --python PATH              the interpreter [$PYTHON or python]
#   --dry-run                  print the commands, run nothing
#   -- K=V ...                 Hydra overrides for the training stage (trainer.num_nodes=4 ...)
# A finished stage (summary.json, wer.json) is skipped; an interrupted training resumes from
# its checkpoints/last.ckpt. Delete a stage's folder to redo it.
# Differs from the paper: the author's curriculum (first the <= 100-frame subset at lr 2e-4,
# auto_avsr #5) and the average of the last 10 epochs are not stages here.

modality=av
train_sets=""
synthetic=false
data_root=""
train_args=""
eval_args=""
. "$(dirname "$0")/lib/pipeline.sh"
out=exp/autoavsr
parse_options "$@"

case $modality in
    av) recipe=autoavsr_lrs3; mods="[audio,video,audiovisual]" ;;
    video) recipe=autoavsr_lrs3_vsr; mods="[video]" ;;
    audio) recipe=autoavsr_lrs3_asr; mods="[audio]" ;;
    *) die "--modality must be av, video or audio" ;;
esac
data=()
if [ "$synthetic" = true ]; then
    train=(+experiment=synth_grid)
    [ -n "$data_root" ] && data+=("data.corpus.root=$data_root")
    decode=(decode=greedy)
else
    train=("+experiment=$recipe")
    [ -n "$data_root" ] && data+=("paths.data_dir=$data_root")
    read -r -a sets <<< "$train_sets"
    data+=("${sets[@]}")
    decode=(decode.beam.beam_size=40 decode.beam.ctc_weight=0.1 decode.beam.penalty=0.0
            decode.beam.pre_beam_score_key=decoder "eval.modalities=$mods"
            "eval.noise.types=[babble]" "eval.noise.snrs=[-5,0,5,10,15,20]")
fi
read -r -a train_args <<< "$train_args"
read -r -a eval_args <<< "$eval_args"

if stage_selected 1 "supervised training"; then
    train_stage "$out/1_train" "${train[@]}" evaluate=false "${data[@]}" "${train_args[@]}"
fi

if stage_selected 2 "evaluation"; then
    require "$out/1_train/checkpoints/last.ckpt" 1 "supervised training"
    evaluate_stage "$out/2_eval" "$out/1_train/checkpoints/last.ckpt" "${decode[@]}" \
        "${eval_args[@]}"
fi
