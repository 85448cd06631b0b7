# Optional target `finetune`: contrastive fine-tuning on an annotations.csv. An
# interrupted run continues from the checkpoint it left in the output folder.
rule finetune:
    input:
        annotations=get_finetune_annotations,
        reference=get_finetune_reference,
        config=out("config.yaml"),
    output:
        config=os.path.join(config["finetune"]["out"], "open_clip_config.json"),
        weights=os.path.join(config["finetune"]["out"], "open_clip_model.safetensors"),
    log:
        out("logs/finetune.log"),
    benchmark:
        out("benchmarks/finetune.tsv")
    threads: config["workflow"]["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 240 * attempt,
        gpu=wants_gpu(config["finetune"]["device"]),
    params:
        base=config["finetune"]["base"],
        folder=lambda wildcards, output: os.path.dirname(output.weights),
    run:
        run_vlm_micro(get_finetune_arguments(input, params), log[0])
