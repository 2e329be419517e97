#!/usr/bin/env bash
# USR (Haliassos et al., "Unified Speech Recognition", NeurIPS 2024): one model for V, A, AV.
#
#   stage 1  self-distillation pre-training, no transcripts   usr_<size>_lrs3_pretrain
#   stage 2  semi-supervised training, greedy pseudo-labels    usr_<size>_lrs3_<resource>
#            of an EMA teacher, from stage 1's encoder side
#   stage 3  optional supervised fine-tuning (--finetune)      common/usr_<size> + usr_finetune
#   stage 4  WER of V, A, AV, clean and babble (beam 40, CTC 0.1, as USR decodes)
#
#   scripts/usr.sh --data-root /data --size base --resource low --out exp/usr_base_low
#   scripts/usr.sh --synthetic true --out exp/usr_synth     # the CPU twin (synth_low_*)
#
# Options (defaults in brackets):
#   --stage N --stop-stage M   run stages N..M [1..100]
#   --out DIR                  one folder per stage under DIR [exp/usr]
#   --data-root DIR            folder holding lrs3/, vox2/ (paths.data_dir); with --synthetic, the
#                              synthetic corpus root [the recipe's data/synthetic/grid]
#   --size base|baseplus|large [base]    --resource low|high [low]
#   --finetune true|false      run stage 3 [false]
#   --synthetic true|false     the twin: synth_low_braven -> synth_low_semi -> synth_low_finetune
#   --data-override "K=V ..."  Hydra data overrides for every training stage (the recipes'
#                              training sets: Base LRS3 433 h, Base+/Large + VoxCeleb2-en;
#                              e.g. data=lrs3_433h to leave VoxCeleb2 out)
#   --pretrain-args, --semi-args, --finetune-args, --eval-args "K=V ..."  per-stage overrides
#   --python PATH              the interpreter [$PYTHON or python]
#   --dry-run                  print the commands, run nothing
#   -- K=V ...                 Hydra overrides for every training stage (trainer.devices=8 ...)
# A finished stage (its summary.json / wer.json) is skipped; an interrupted training stage
# resumes from its checkpoints/last.ckpt (ckpt_path=last). Delete a stage's folder to redo it.

size=base
resource=low
finetune=false
synthetic=false
data_root=""
data_override=""
pretrain_args=""
semi_args=""
finetune_args=""
eval_args=""
. "$(dirname "$0")/lib/pipeline.sh"
out=exp/usr
parse_options "$@"

case $size in base|baseplus|large) ;; *) die "--size must be base, baseplus or large" ;; esac
case $resource in low|high) ;; *) die "--resource must be low or high" ;; esac

data=()
if [ "$synthetic" = true ]; then
    pretrain=(+experiment=synth_low_braven)
    semi=(+experiment=synth_low_semi)
    tune=(+experiment=synth_low_finetune init.0.modules=null)
    [ -n "$data_root" ] && data+=("data.corpus.root=$data_root")
    decode=(decode=greedy)
else
    pretrain=("+experiment=usr_${size}_lrs3_pretrain")
    semi=("+experiment=usr_${size}_lrs3_${resource}")
    tune=("+experiment=[common/usr_${size},common/usr_finetune]")
    [ -n "$data_root" ] && data+=("paths.data_dir=$data_root")
    decode=(decode.beam.beam_size=40 decode.beam.ctc_weight=0.1 decode.beam.penalty=0.0
            "eval.noise.types=[babble]")
fi
read -r -a extra_data <<< "$data_override"
data+=("${extra_data[@]}")
read -r -a pretrain_args <<< "$pretrain_args"
read -r -a semi_args <<< "$semi_args"
read -r -a finetune_args <<< "$finetune_args"
read -r -a eval_args <<< "$eval_args"

pre_ckpt=$out/1_pretrain/checkpoints/last.ckpt
semi_ckpt=$out/2_semi/checkpoints/last.ckpt
tune_ckpt=$out/3_finetune/checkpoints/last.ckpt

if stage_selected 1 "self-distillation pre-training"; then
    train_stage "$out/1_pretrain" "${pretrain[@]}" "${data[@]}" "${pretrain_args[@]}"
fi

if stage_selected 2 "semi-supervised training from the pre-trained encoder"; then
    require "$pre_ckpt" 1 "self-distillation pre-training"
    train_stage "$out/2_semi" "${semi[@]}" "init.0.path=$pre_ckpt" evaluate=false \
        "${data[@]}" "${semi_args[@]}"
fi

if [ "$finetune" = true ] && stage_selected 3 "supervised fine-tuning"; then
    require "$semi_ckpt" 2 "semi-supervised training"
    train_stage "$out/3_finetune" "${tune[@]}" "init.0.path=$semi_ckpt" evaluate=false \
        "${data[@]}" "${finetune_args[@]}"
fi

if stage_selected 4 "evaluation"; then
    if [ "$finetune" = true ]; then
        require "$tune_ckpt" 3 "supervised fine-tuning"
        ckpt=$tune_ckpt
    else
        require "$semi_ckpt" 2 "semi-supervised training"
        ckpt=$semi_ckpt
    fi
    evaluate_stage "$out/4_eval" "$ckpt" "${decode[@]}" "${eval_args[@]}"
fi
