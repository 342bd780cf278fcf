"""One public function per workflow; the CLI, the UI and batch jobs are thin callers of these."""
