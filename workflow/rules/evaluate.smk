rule search:
    output:
        expand("results/runs/{{model}}/{{variant}}/{{corpus}}/{setting}.parquet", setting=SETTINGS),
        manifest=artifact_manifest("results/runs/{model}/{variant}/{corpus}"),
    input:
        package("search"),
        embeddings="results/embeddings/{model}/{variant}/{corpus}",
        corpus=corpus_split("test"),
    params:
        search=as_json(config["search"]),
        corpus=lambda w, input: parent_dir(input.corpus[0]),
        out=lambda w, output: parent_dir(output[0]),
    threads: job_threads("search")
    resources:
        **job_resources("search"),
    log:
        "results/logs/search/{model}/{variant}/{corpus}.log",
    benchmark:
        "results/benchmarks/search/{model}/{variant}/{corpus}.tsv"
    conda:
        ENV
    shell:
        stage_command("search") + " --params {params.search:q} --embeddings {input.embeddings}"
        " --corpus {params.corpus} --out {params.out} > {log} 2>&1"


rule evaluate:
    output:
        expand(
            "results/metrics/{{model}}/{{variant}}/{{corpus}}/{name}",
            name=METRIC_FILES,
        ),
        manifest=artifact_manifest("results/metrics/{model}/{variant}/{corpus}"),
    input:
        package("evaluate"),
        runs=expand("results/runs/{{model}}/{{variant}}/{{corpus}}/{setting}.parquet", setting=SETTINGS),
        runs_manifest=artifact_manifest("results/runs/{model}/{variant}/{corpus}"),
        corpus=corpus_split("test"),
    params:
        evaluation=lambda w: as_json(
            {**config["evaluation"], "descriptor": descriptor(config, w.corpus, w.model, Variant.parse(w.variant))}
        ),
        run=lambda w, input: parent_dir(input.runs[0]),
        corpus=lambda w, input: parent_dir(input.corpus[0]),
        out=lambda w, output: parent_dir(output[0]),
    threads: job_threads("evaluate")
    resources:
        **job_resources("evaluate"),
    log:
        "results/logs/evaluate/{model}/{variant}/{corpus}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/{variant}/{corpus}.tsv"
    conda:
        ENV
    shell:
        stage_command("evaluate") + " --params {params.evaluation:q}"
        " --run {params.run} --corpus {params.corpus} --out {params.out} > {log} 2>&1"


rule evaluate_image_text:
    output:
        expand(
            "results/image_text/metrics/{{corpus}}/{{run}}/{name}",
            name=METRIC_FILES,
        ),
        manifest=artifact_manifest("results/image_text/metrics/{corpus}/{run}"),
    input:
        package("evaluate-image-text"),
        unpack(image_text_run_inputs),
        split=corpus_split("test"),
    params:
        evaluation=lambda w: as_json(
            {
                **config["evaluation"],
                **IMAGE_TEXT["evaluation"],
                "text_model": image_text_model_params(zero_shot_model(w.run)),
                "descriptor": image_text_descriptor(config, w.run),
            }
        ),
        corpus=lambda w, input: parent_dir(input.split[0]),
        out=lambda w, output: parent_dir(output[0]),
    threads: job_threads("evaluate_image_text")
    resources:
        **job_resources("evaluate_image_text"),
    log:
        "results/logs/evaluate_image_text/{corpus}/{run}.log",
    benchmark:
        "results/benchmarks/evaluate_image_text/{corpus}/{run}.tsv"
    conda:
        ENV
    shell:
        stage_command("evaluate_image_text") + " --params {params.evaluation:q} --model {input.model}"
        " --features {input.features} --corpus {params.corpus} --out {params.out} > {log} 2>&1"
