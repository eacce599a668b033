"""Reports: stage summaries rendered as markdown and PNG plots (the demo's and compute-optimal's).

    markdown.py        md_table and number formatting
    plots.py           the one matplotlib set-up and every plot ttstrain draws
    demo_summary.py    the demo report's sections as data, and its `findings` block
    demo_report.py     report.md and the plots of `ttstrain demo`
    compute_optimal_report.py  compute_optimal.md of `ttstrain compute-optimal`
"""
