rule tables:
    output:
        summary=report(artifact("tables", "summary.csv"), caption="../report/summary.rst", category="Tables"),
        headline=report(
            expand(artifact("tables", "{name}.csv"), name=text_table_stems()),
            caption="../report/headline.rst",
            category="Tables",
        ),
        tables=expand(artifact("tables", "{name}.{ext}"), name=text_table_stems(), ext=["md", "tex"]),
        per_language=expand(
            artifact("tables", "{name}.{ext}"),
            name=[per_language_stem(corpus) for corpus in config["experiment"]["eval_corpora"]],
            ext=["md", "csv", "tex"],
        ),
        tests=report(
            expand(artifact("tables", "{name}.csv"), name=["significance", "confidence"]),
            caption="../report/significance.rst",
            category="Tables",
        ),
        plots=report(
            expand(
                artifact("plots", "{name}.png"),
                name=text_plots(config["experiment"]["eval_corpora"]),
            ),
            caption="../report/plots.rst",
            category="Plots",
        ),
        heatmaps=report(heatmaps(), caption="../report/heatmap.rst", category="Cross-lingual heatmaps"),
        image_text=report(image_text_tables(), caption="../report/image_text.rst", category="Image-text"),
        record=f"{RESULTS}/workflow.json",
        manifest=artifact_manifest(artifact("tables")),
    input:
        package("tables"),
        metrics=metrics_files(metrics_dirs()),
        image_text_metrics=metrics_files(image_text_metrics_dirs()),
        lit_models=lit_models(),
    params:
        tables=stage_params("tables"),
        metrics=lambda w, input: " ".join(unique_parents(input.metrics)),
        image_text_metrics=lambda w, input: " ".join(unique_parents(input.image_text_metrics)),
        tables_dir=lambda w, output: parent_dir(output.summary),
        plots=lambda w, output: parent_dir(output.plots[0]),
    threads: job_threads("tables")
    resources:
        **job_resources("tables"),
    log:
        log_file("tables", "tables"),
    benchmark:
        benchmark_file("tables", "tables")
    conda:
        ENV
    shell:
        stage_command(
            "tables",
            "tables",
            metrics="{params.metrics}",
            image_text_metrics="{params.image_text_metrics}",
            lit_models="{input.lit_models}",
            tables="{params.tables_dir}",
            plots="{params.plots}",
            record="{output.record}",
        )
