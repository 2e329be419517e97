# Shared pieces of the paper pipelines in scripts/ (sourced, not run).
#
# A pipeline script declares its options as shell variables with defaults, sources this file,
# calls `parse_options "$@"`, then runs its stages in order:
#
#   if stage_selected 2 "pre-training"; then
#       require "$out/1_kmeans/kmeans.json" 1 "MFCC k-means"
#       train_stage "$out/2_pretrain" +experiment=NAME ...
#   fi
#
# Options: every declared variable `foo_bar` is set by `--foo-bar VALUE` (ESPnet's
# parse_options.sh convention; `--flag` alone for a variable declared `false` sets it true).
# Everything after `--` is a Hydra override appended to every training stage.
#
# Resume: a stage is finished when its marker exists (training: <dir>/summary.json, which
# avsr.train writes after the last step; k-means: kmeans.json; evaluation: wer.json; an export:
# its file) and is then skipped. A training stage always runs with a fixed folder and
# ckpt_path=last, so an interrupted one continues from <dir>/checkpoints/last.ckpt (weights,
# optimiser, schedule, sampler position: the periodic checkpoint callback writes it every N
# steps). To redo a finished stage, delete its folder.

set -euo pipefail

stage=1
stop_stage=100
out=exp
dry_run=false
python=${PYTHON:-python}
overrides=()

# this script's options without --stage/--stop-stage, for the hints of the error messages
_hint_args=()

die() {
    echo "$(basename "$0"): error: $*" >&2
    exit 1
}

parse_options() {
    local arg name
    while [ $# -gt 0 ]; do
        arg=$1
        case $arg in
            --)
                shift
                overrides=("$@")
                return 0
                ;;
            --help|-h)
                sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
                exit 0
                ;;
            --*=*)
                die "write '--option value', not '$arg'"
                ;;
            --*)
                name=${arg#--}
                name=${name//-/_}
                # only options the script declared (a typo must not pass silently)
                if ! declare -p "$name" >/dev/null 2>&1 || [ "$name" = overrides ]; then
                    die "unknown option $arg (see $0 --help)"
                fi
                if [ "${!name}" = false ] && { [ $# -lt 2 ] || [[ $2 == --* ]]; }; then
                    printf -v "$name" '%s' true
                    [ "$name" = dry_run ] || _hint_args+=("$arg")
                    shift
                    continue
                fi
                [ $# -ge 2 ] || die "option $arg needs a value"
                printf -v "$name" '%s' "$2"
                case $name in stage|stop_stage|dry_run) ;; *) _hint_args+=("$arg" "$2") ;; esac
                shift 2
                ;;
            *)
                die "unexpected argument '$arg' (Hydra overrides go after --)"
                ;;
        esac
    done
}

# the stages between --stage and --stop-stage run; prints the stage's banner
stage_selected() {
    local n=$1 name=$2
    if [ "$n" -ge "$stage" ] && [ "$n" -le "$stop_stage" ]; then
        echo "== stage $n: $name"
        return 0
    fi
    return 1
}

# one word of a printed command, quoted so that it can be pasted into a shell
_quote() {
    local word=$1
    if [[ $word =~ ^[A-Za-z0-9_./=:+,@%~-]*$ ]]; then
        printf '%s' "$word"
    elif [[ $word != *"'"* ]]; then
        printf "'%s'" "$word"
    elif [[ ! $word =~ [\"\$\`\\!] ]]; then
        printf '"%s"' "$word"
    else
        printf '%q' "$word"
    fi
}

# print a command, then run it (unless --dry-run)
run() {
    local word
    printf '+'
    for word in "$@"; do
        printf ' '
        _quote "$word"
    done
    printf '\n'
    if [ "$dry_run" = true ]; then
        return 0
    fi
    "$@"
}

# require FILE N NAME: FILE is the output of stage N (NAME) that this stage reads
require() {
    local file=$1 n=$2 name=$3
    if [ -e "$file" ]; then
        return 0
    fi
    local msg="$file is missing: it is made by stage $n ($name); run that stage first:
    $(_rerun_hint "$n")"
    if [ "$dry_run" = true ]; then
        echo "note: $msg" >&2
        return 0
    fi
    die "$msg"
}

_rerun_hint() {
    # this script's command line with stage N alone selected
    local n=$1 word
    _quote "$0"
    for word in "${_hint_args[@]}" --stage "$n" --stop-stage "$n"; do
        printf ' '
        _quote "$word"
    done
    if [ ${#overrides[@]} -gt 0 ]; then
        printf ' --'
        for word in "${overrides[@]}"; do
            printf ' '
            _quote "$word"
        done
    fi
}

# not_done MARKER: true (run the stage) unless MARKER exists: then the stage is skipped
not_done() {
    local marker=$1
    if [ -e "$marker" ]; then
        echo "   finished earlier ($marker): skipped; delete $(dirname "$marker") to redo it"
        return 1
    fi
    return 0
}

# train_stage DIR OVERRIDES...: python -m avsr.train in a fixed folder, resumed if interrupted
train_stage() {
    local dir=$1
    shift
    not_done "$dir/summary.json" || return 0
    if [ -e "$dir/checkpoints/last.ckpt" ]; then
        echo "   interrupted earlier: resuming from $dir/checkpoints/last.ckpt"
    fi
    run "$python" -m avsr.train "$@" "hydra.run.dir=$dir" "paths.output_dir=$dir" \
        ckpt_path=last "${overrides[@]}"
}

# evaluate_stage DIR CKPT OVERRIDES...: python -m avsr.evaluate into DIR
evaluate_stage() {
    local dir=$1 ckpt=$2
    shift 2
    not_done "$dir/wer.json" || return 0
    run "$python" -m avsr.evaluate "ckpt=$ckpt" "hydra.run.dir=$dir" "paths.output_dir=$dir" "$@"
}
