rule base_model:
    output:
        directory(artifact("model", variant=ZERO_SHOT)),
    input:
        package("base-model"),
        corpus=base_model_corpus,
        local=local_model_dir,
    params:
        model=stage_params("base-model"),
        corpus=lambda w, input: f"--corpus {parent_dir(input.corpus[0])}" if input.corpus else "",
    threads: job_threads("base_model")
    resources:
        **job_resources("base_model"),
    log:
        log_file("base_model", "{model}"),
    benchmark:
        benchmark_file("base_model", "{model}")
    conda:
        ENV
    shell:
        stage_command("base_model", "model")


rule train:
    output:
        report(
            directory(artifact("model", variant="{trainset}.{strategy}.s{seed}")),
            patterns=["training_curves.{ext}"],
            caption="../report/training.rst",
            category="Training curves",
            subcategory="{model} on {trainset}",
            labels={"strategy": "{strategy}", "seed": "{seed}"},
        ),
    input:
        package("train"),
        base=artifact("model", variant=ZERO_SHOT),
        batches=artifact("batches"),
    params:
        training=stage_params("train"),
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    log:
        log_file("train", "{model}/{trainset}.{strategy}.s{seed}"),
    benchmark:
        benchmark_file("train", "{model}/{trainset}.{strategy}.s{seed}")
    conda:
        ENV
    shell:
        stage_command("train", "training")


rule train_lit:
    output:
        report(
            directory(artifact("image_text_model", run="{strategy}.s{seed}")),
            patterns=["training_curves.{ext}"],
            caption="../report/training.rst",
            category="Training curves",
            subcategory="image-text on {corpus}",
            labels={"strategy": "{strategy}", "seed": "{seed}"},
        ),
    input:
        package("train-lit"),
        base=lambda w: artifact("model", model=IMAGE_TEXT["text_model"], variant=ZERO_SHOT),
        features=lambda w: artifact("features", tower=IMAGE_TEXT["image_tower"], corpus=w.corpus),
        batches=artifact("image_text_batches"),
        states=lambda w: caption_states_dirs("train", w.corpus),
    params:
        training=stage_params("train-lit"),
        states=lambda w, input: optional_path("states", input.states),
    threads: job_threads("train_lit")
    resources:
        **job_resources("train_lit"),
    log:
        log_file("train_lit", "{corpus}/{strategy}.s{seed}"),
    benchmark:
        benchmark_file("train_lit", "{corpus}/{strategy}.s{seed}")
    conda:
        ENV
    shell:
        stage_command("train_lit", "training")
