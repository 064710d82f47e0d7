"""The book wing: everything that reads run stores and writes the book. It imports no training code
(tests/test_wings.py): a chapter that must fill its own gaps calls `kdlib.executors` itself.

    build            which chapters a build has, their execution (papermill), _toc.yml, the Jupyter Book build
    notebooks        the chapters' parameters and their execution by papermill
    setup_chapter    what one setup chapter shows (ChapterSetup resolves its parameters, SetupView reads)
    frames           the run store as tables (one row per run; the four arms under one reading)
    setup_analysis   per-setup tests and summaries (transfer, headroom shares, asymmetry, convergence, readings)
    evidence         the summaries of a whole book (its scale and the shipped scales, every reading)
    claims           verdicts on the paper's claims from the evidence
    figures          matplotlib and plotly figures
    formatting       display labels, p-values, units, table styles
    explorer         the JupyterLab explorer (ipywidgets over the run stores)
    compute_ledger   seconds and devices of every run; what the runs say about reproducibility
    run_costs        expected run times (measured, or estimated from parameters and data sizes)
    gpu_plan         the GPU run-plan page
    vendor           offline JavaScript for the book
    sphinx_assets    a Sphinx extension: each inline script once per page
"""
