#!/usr/bin/env bash
# Zhang et al. 2022 (contextually fused audio-visual representations): a transformer fusion
# module pre-trained with flexible masking (a whole stream masked out, and spans), then one
# fine-tuned model for A, V and AV.
#
#   stage 1  k-means of MFCC + deltas (the pre-training targets)   python -m avsr.ssl.kmeans
#   stage 2  pre-training: masked cluster prediction, whole-stream  zhang_base_lrs3_pretrain
#            masking p 0.25 / 0.25 + spans
#   stage 3  fine-tuning on A, V and AV every step                  zhang_base_lrs3_finetune
#   stage 4  WER of A, V, AV, clean and babble from the one model   python -m avsr.evaluate
#
#   scripts/zhang.sh --data-root /data --out exp/zhang
#   scripts/zhang.sh --synthetic true --out exp/zhang_synth    # the CPU twin (synth_zhang_*)
#
# Options (defaults in brackets):
#   --stage N --stop-stage M   run stages N..M [1..100]
#   --out DIR                  one folder per stage under DIR [exp/zhang]
#   --data-root DIR            folder holding lrs3/ (paths.data_dir); with --synthetic, the
#                              synthetic corpus root [data/synthetic/grid]
#   --clusters K               k-means clusters [100]
#   --level input|feature      where spans are masked in pre-training [the recipe's: feature]
#   --synthetic true|false     the twin: synth_zhang_pretrain, synth_zhang_finetune
#   --data-override "K=V ..."  Hydra data overrides for every training stage
#   --kmeans-args, --pretrain-args, --finetune-args, --eval-args "..."  per-stage arguments
#   --python PATH              the interpreter [$PYTHON or python]
#   --dry-run                  print the commands, run nothing
#   -- K=V ...                 Hydra overrides for every training stage
# A finished stage (kmeans.json, summary.json, wer.json) is skipped; an interrupted training
# stage resumes from its checkpoints/last.ckpt. Delete a stage's folder to redo it.

clusters=100
level=""
synthetic=false
data_root=""
data_override=""
kmeans_args=""
pretrain_args=""
finetune_args=""
eval_args=""
. "$(dirname "$0")/lib/pipeline.sh"
out=exp/zhang
parse_options "$@"

data=()
if [ "$synthetic" = true ]; then
    pretrain=(+experiment=synth_zhang_pretrain ssl_labels=null)
    finetune=(+experiment=synth_zhang_finetune)
    root=${data_root:-data/synthetic/grid}
    [ -n "$data_root" ] && data+=("data.corpus.root=$data_root")
    decode=(decode=greedy)
else
    pretrain=(+experiment=zhang_base_lrs3_pretrain)
    finetune=(+experiment=zhang_base_lrs3_finetune)
    root=${data_root:-data}/lrs3
    [ -n "$data_root" ] && data+=("paths.data_dir=$data_root")
    decode=()
fi
[ -n "$level" ] && pretrain+=("stage.objective.level=$level")
read -r -a extra_data <<< "$data_override"
data+=("${extra_data[@]}")
read -r -a kmeans_args <<< "$kmeans_args"
read -r -a pretrain_args <<< "$pretrain_args"
read -r -a finetune_args <<< "$finetune_args"
read -r -a eval_args <<< "$eval_args"

labels=$out/1_kmeans
encoder=$out/2_pretrain/checkpoints/last.ckpt
model=$out/3_finetune/checkpoints/last.ckpt

if stage_selected 1 "k-means of MFCC features"; then
    if not_done "$labels/kmeans.json"; then
        run "$python" -m avsr.ssl.kmeans --root "$root" --feature mfcc --num-clusters "$clusters" \
            --out "$labels" "${kmeans_args[@]}"
    fi
fi

if stage_selected 2 "pre-training with flexible masking"; then
    require "$labels/kmeans.json" 1 "k-means of MFCC features"
    train_stage "$out/2_pretrain" "${pretrain[@]}" "stage.objective.label_dir=$labels" \
        "${data[@]}" "${pretrain_args[@]}"
fi

if stage_selected 3 "fine-tuning on A, V and AV"; then
    require "$encoder" 2 "pre-training with flexible masking"
    train_stage "$out/3_finetune" "${finetune[@]}" "init.0.path=$encoder" evaluate=false \
        "${data[@]}" "${finetune_args[@]}"
fi

if stage_selected 4 "evaluation of A, V and AV"; then
    require "$model" 3 "fine-tuning on A, V and AV"
    evaluate_stage "$out/4_eval" "$model" "${decode[@]}" "${eval_args[@]}"
fi
