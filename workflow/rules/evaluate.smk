# Optional target `evaluate`: metrics of a model on an annotations.csv.
rule evaluate:
    input:
        annotations=get_evaluate_annotations,
        config=out("config.yaml"),
    output:
        metrics=os.path.join(config["evaluate"]["out"], "metrics.json"),
    log:
        out("logs/evaluate.log"),
    benchmark:
        out("benchmarks/evaluate.tsv")
    threads: config["workflow"]["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
        gpu=wants_gpu(config["model"]["device"]),
    params:
        model=config["evaluate"]["model"],
        folder=lambda wildcards, output: os.path.dirname(output.metrics),
    run:
        run_vlm_micro(
            [
                "evaluate",
                "--config",
                input.config,
                "--model",
                params.model,
                "--annotations",
                input.annotations,
                "--out",
                params.folder,
            ],
            log[0],
        )
