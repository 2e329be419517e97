#!/usr/bin/env bash
# AV-HuBERT (Shi et al., ICLR 2022): masked multimodal cluster prediction, iterated, then
# VSR fine-tuning.
#
#   stage 1  k-means of MFCC + deltas (100 Hz)                 python -m avsr.ssl.kmeans
#   stage 2  pre-training, iteration 1 (feature masking)        avhubert_base_lrs3_pretrain
#   stage 3  iterations 2..N: k-means of layer features of the  avsr.ssl.kmeans + the same
#            previous iteration's model, then pre-training       recipe; the last iteration
#            from scratch on them                               masks at input level with
#                                                               modality dropout 0.5 / 0.5
#   stage 4  fine-tuning of the encoder side with a decoder     avhubert_<size>_lrs3_<labels>
#   stage 5  WER (video; beam 50, length-normalised, as AV-HuBERT decodes)
#
#   scripts/avhubert.sh --data-root /data --labels 30h --out exp/avhubert
#   scripts/avhubert.sh --data-root /data --init-from base_lrs3_iter5.pt --stage 4  # released
#   scripts/avhubert.sh --synthetic true --iterations 2 --out exp/avhubert_synth     # CPU twin
#
# Options (defaults in brackets):
#   --stage N --stop-stage M   run stages N..M [1..100]
#   --out DIR                  one folder per stage under DIR [exp/avhubert]
#   --data-root DIR            folder holding lrs3/ (paths.data_dir); with --synthetic, the
#                              synthetic corpus root [data/synthetic/grid]
#   --size base|large [base]   --labels 30h|433h [30h]
#   --iterations N             pre-training iterations [5]
#   --clusters "K1 ... KN"     clusters of each iteration's targets [100 100 500 1000 2000]
#   --layers "L1 ... LN-1"     block of iteration i's model clustered for i+1 [9 12 12 12]
#   --init-from FILE           fine-tune a released AV-HuBERT encoder (init format avhubert)
#                              instead of stages 1-3
#   --synthetic true|false     the twin: synth_low_avhubert iterations, synth_low_finetune
#   --data-override "K=V ..."  Hydra data overrides for every training stage
#   --kmeans-args, --pretrain-args, --finetune-args, --eval-args "..."  per-stage arguments
#   --python PATH              the interpreter [$PYTHON or python]
#   --dry-run                  print the commands, run nothing
#   -- K=V ...                 Hydra overrides for every training stage
# A finished stage (summary.json, kmeans.json, wer.json) is skipped; an interrupted training
# stage resumes from its checkpoints/last.ckpt. Delete a stage's folder to redo it.

size=base
labels=30h
iterations=5
clusters="100 100 500 1000 2000"
layers="9 12 12 12"
init_from=""
synthetic=false
data_root=""
data_override=""
kmeans_args=""
pretrain_args=""
finetune_args=""
eval_args=""
. "$(dirname "$0")/lib/pipeline.sh"
out=exp/avhubert
parse_options "$@"

case $size in base|large) ;; *) die "--size must be base or large" ;; esac
case $labels in 30h|433h) ;; *) die "--labels must be 30h or 433h" ;; esac
read -r -a clusters <<< "$clusters"
read -r -a layers <<< "$layers"
[ "${#clusters[@]}" -ge "$iterations" ] || die "--clusters needs $iterations numbers"
[ "${#layers[@]}" -ge $((iterations - 1)) ] || die "--layers needs $((iterations - 1)) numbers"
if [ "$size" = large ] && [ -z "$init_from" ] && [ "$stage" -le 3 ]; then
    die "AV-HuBERT Large is pre-trained once, as iteration 5 on Base's iteration-4 targets: \
run the Base pipeline, or fine-tune a released Large encoder with --init-from FILE --stage 4"
fi

data=()
if [ "$synthetic" = true ]; then
    pretrain=(+experiment=synth_low_avhubert ssl_labels=null)
    last_iteration=(stage.objective.level=input model.fusion.p_modality=0.5)
    finetune=(+experiment=synth_low_finetune)
    root=${data_root:-data/synthetic/grid}
    [ -n "$data_root" ] && data+=("data.corpus.root=$data_root")
    decode=(decode=greedy "eval.modalities=[video]")
else
    pretrain=(+experiment=avhubert_base_lrs3_pretrain)
    last_iteration=(stage.objective.level=input model.fusion.fusion.p_modality=0.5)
    finetune=("+experiment=avhubert_${size}_lrs3_${labels}")
    root=${data_root:-data}/lrs3
    [ -n "$data_root" ] && data+=("paths.data_dir=$data_root")
    decode=(decode.beam.beam_size=50 decode.beam.ctc_weight=0.0 ++decode.beam.normalize_length=true
            "eval.modalities=[video]")
fi
read -r -a extra_data <<< "$data_override"
data+=("${extra_data[@]}")
read -r -a kmeans_args <<< "$kmeans_args"
read -r -a pretrain_args <<< "$pretrain_args"
read -r -a finetune_args <<< "$finetune_args"
read -r -a eval_args <<< "$eval_args"

iter_dir() {  # the folder of pre-training iteration $1
    if [ "$1" -eq 1 ]; then echo "$out/2_iter1"; else echo "$out/3_iter$1"; fi
}
kmeans_dir() {
    if [ "$1" -eq 1 ]; then echo "$out/1_kmeans_iter1"; else echo "$out/3_kmeans_iter$1"; fi
}
# pretrain ITERATION: one pre-training iteration on its k-means targets
pretrain() {
    local i=$1 extra=()
    [ "$i" -eq "$iterations" ] && extra=("${last_iteration[@]}")
    train_stage "$(iter_dir "$i")" "${pretrain[@]}" "stage.objective.label_dir=$(kmeans_dir "$i")" \
        "${extra[@]}" "${data[@]}" "${pretrain_args[@]}"
}

if [ -z "$init_from" ] && stage_selected 1 "k-means of MFCC features"; then
    if not_done "$(kmeans_dir 1)/kmeans.json"; then
        run "$python" -m avsr.ssl.kmeans --root "$root" --feature mfcc \
            --num-clusters "${clusters[0]}" --out "$(kmeans_dir 1)" "${kmeans_args[@]}"
    fi
fi

if [ -z "$init_from" ] && stage_selected 2 "pre-training, iteration 1"; then
    require "$(kmeans_dir 1)/kmeans.json" 1 "k-means of MFCC features"
    pretrain 1
fi

if [ -z "$init_from" ] && [ "$iterations" -ge 2 ] && \
        stage_selected 3 "pre-training, iterations 2-$iterations"; then
    for ((i = 2; i <= iterations; i++)); do
        prev=$(iter_dir $((i - 1)))/checkpoints/last.ckpt
        require "$prev" $((i == 2 ? 2 : 3)) "pre-training, iteration $((i - 1))"
        if not_done "$(kmeans_dir "$i")/kmeans.json"; then
            run "$python" -m avsr.ssl.kmeans --root "$root" --feature layer \
                --layer "${layers[$((i - 2))]}" --ckpt "$prev" \
                --num-clusters "${clusters[$((i - 1))]}" --out "$(kmeans_dir "$i")" \
                "${kmeans_args[@]}"
        fi
        pretrain "$i"
    done
fi

encoder=$(iter_dir "$iterations")/checkpoints/last.ckpt
if stage_selected 4 "fine-tuning"; then
    if [ -n "$init_from" ]; then
        [ -e "$init_from" ] || [ "$dry_run" = true ] || die "--init-from $init_from: no such file"
        init=("init.0.path=$init_from")   # the recipe's init: format avhubert
    else
        require "$encoder" $((iterations == 1 ? 2 : 3)) "pre-training, iteration $iterations"
        if [ "$synthetic" = true ]; then
            init=("init.0.path=$encoder")
        else
            init=("init=[{path: '$encoder', modules: [audio_frontend, video_frontend, fusion,"
                  "encoder]}]")
            init=("${init[*]}")
        fi
    fi
    train_stage "$out/4_finetune" "${finetune[@]}" "${init[@]}" evaluate=false "${data[@]}" \
        "${finetune_args[@]}"
fi

if stage_selected 5 "evaluation"; then
    require "$out/4_finetune/checkpoints/last.ckpt" 4 "fine-tuning"
    evaluate_stage "$out/5_eval" "$out/4_finetune/checkpoints/last.ckpt" "${decode[@]}" \
        "${eval_args[@]}"
fi
