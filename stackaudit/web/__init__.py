"""The local dashboard (`stackaudit serve`): the latest audit, its findings with their explain pages,
history from the watch database, the plan and the journal, and a button to re-run the audit.

No rules here: it shows Reports made by the pipeline, through the same templates as the HTML report.
"""
