BEGIN TRANSACTION;
CREATE TABLE run_platforms (
	run_id VARCHAR(64) NOT NULL, 
	platform VARCHAR(64) NOT NULL, 
	info TEXT NOT NULL, 
	PRIMARY KEY (run_id, platform), 
	FOREIGN KEY(run_id) REFERENCES runs (id)
);
INSERT INTO "run_platforms" VALUES('20261202-051809-bb22','native','{"platform": {"name": "native", "kind": "NativePlatform"}, "machine": {"scratch_dir": "/tmp/v1/home/scratch/hvbench-w1469y04"}, "system": {"cpu_model": "AMD EPYC", "cpu_logical": 2, "cpu_mhz": 2445.432, "cpu_flags": ["3dnowprefetch", "abm", "adx", "aes", "apic", "arat", "avx", "avx2", "bmi1", "bmi2", "clflush", "clflushopt", "clwb", "clzero", "cmov", "cmp_legacy", "constant_tsc", "cpuid", "cr8_legacy", "cx16", "cx8", "de", "erms", "extd_apicid", "f16c", "fma", "fpu", "fsgsbase", "fsrm", "fxsr", "fxsr_opt", "ht", "hypervisor", "invpcid", "lahf_lm", "lm", "mca", "mce", "misalignsse", "mmx", "mmxext", "movbe", "msr", "mtrr", "nonstop_tsc", "nopl", "nx", "osvw", "pae", "pat", "pcid", "pclmulqdq", "pdpe1gb", "pge", "pni", "popcnt", "pse", "pse36", "rdpid", "rdrand", "rdseed", "rdtscp", "rep_good", "sep", "sha_ni", "smap", "smep", "sse", "sse2", "sse4_1", "sse4_2", "sse4a", "ssse3", "syscall", "topoext", "tsc", "tsc_adjust", "tsc_deadline_timer", "tsc_known_freq", "umip", "vaes", "vme", "vmmcall", "vpclmulqdq", "x2apic", "xgetbv1", "xsave", "xsavec", "xsaveerptr", "xsaveopt", "xsaves", "xtopology"], "cpu_flags_notable": ["hypervisor", "avx", "avx2", "aes", "sha_ni", "constant_tsc", "nonstop_tsc", "rdtscp", "pdpe1gb", "x2apic"], "memory_bytes": 25276059648, "kernel": "Linux 6.18.44-fc-v857 x86_64", "hostname": "vm", "distro": "Debian GNU/Linux 12 (bookworm)", "virtualization": "docker", "governor": null, "turbo": null, "clocksource": "tsc", "loadavg": [0.77, 0.99, 1.17], "dmi": {}, "hvbench_version": "0.1.0", "tool_versions": {"sysbench": "sysbench 1.0.20", "deb:sysbench": "1.0.20+ds-5"}, "fingerprint": "213e46a689ddde51"}}');
CREATE TABLE runs (
	id VARCHAR(64) NOT NULL, 
	created VARCHAR(40) NOT NULL, 
	finished VARCHAR(40), 
	status VARCHAR(20) NOT NULL, 
	hvbench_version VARCHAR(40) NOT NULL, 
	fingerprint VARCHAR(64), 
	campaign TEXT NOT NULL, 
	"plan" TEXT NOT NULL, 
	host TEXT NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "runs" VALUES('20261202-051809-bb22','2026-12-02T05:18:10.034+00:00','2026-12-02T05:18:10.323+00:00','complete','0.1.0','213e46a689ddde51','{"platforms": [{"name": "native", "kind": null, "settings": {}, "host": null, "matrix": null, "family": null, "levels": null}], "workloads": [{"name": "sysbench-cpu", "params": {"events": 200}}], "reps": 2, "ci_target": 0.02, "min_reps": 6, "max_reps": 30, "max_seconds": 900.0, "budget": null, "margin": 0.02, "warmup": true, "fresh_guest": false, "seed": 1, "timeout": null, "baseline": null, "host": "local", "host_settings": {}, "forks": 10, "lock_timeout": null, "ssh_identity": null, "accept_new_host_key": false, "store": null}','[{"seq": 0, "platform": "native", "workload": "sysbench-cpu", "workload_index": 0, "params": {"events": 200}, "repetition": -1, "warmup": true}, {"seq": 1, "platform": "native", "workload": "sysbench-cpu", "workload_index": 0, "params": {"events": 200}, "repetition": 0, "warmup": false}, {"seq": 2, "platform": "native", "workload": "sysbench-cpu", "workload_index": 0, "params": {"events": 200}, "repetition": 1, "warmup": false}]','{"cpu_model": "AMD EPYC", "cpu_logical": 2, "cpu_mhz": 2445.432, "cpu_flags": ["3dnowprefetch", "abm", "adx", "aes", "apic", "arat", "avx", "avx2", "bmi1", "bmi2", "clflush", "clflushopt", "clwb", "clzero", "cmov", "cmp_legacy", "constant_tsc", "cpuid", "cr8_legacy", "cx16", "cx8", "de", "erms", "extd_apicid", "f16c", "fma", "fpu", "fsgsbase", "fsrm", "fxsr", "fxsr_opt", "ht", "hypervisor", "invpcid", "lahf_lm", "lm", "mca", "mce", "misalignsse", "mmx", "mmxext", "movbe", "msr", "mtrr", "nonstop_tsc", "nopl", "nx", "osvw", "pae", "pat", "pcid", "pclmulqdq", "pdpe1gb", "pge", "pni", "popcnt", "pse", "pse36", "rdpid", "rdrand", "rdseed", "rdtscp", "rep_good", "sep", "sha_ni", "smap", "smep", "sse", "sse2", "sse4_1", "sse4_2", "sse4a", "ssse3", "syscall", "topoext", "tsc", "tsc_adjust", "tsc_deadline_timer", "tsc_known_freq", "umip", "vaes", "vme", "vmmcall", "vpclmulqdq", "x2apic", "xgetbv1", "xsave", "xsavec", "xsaveerptr", "xsaveopt", "xsaves", "xtopology"], "cpu_flags_notable": ["hypervisor", "avx", "avx2", "aes", "sha_ni", "constant_tsc", "nonstop_tsc", "rdtscp", "pdpe1gb", "x2apic"], "memory_bytes": 25276059648, "kernel": "Linux 6.18.44-fc-v857 x86_64", "hostname": "vm", "distro": "Debian GNU/Linux 12 (bookworm)", "virtualization": "docker", "governor": null, "turbo": null, "clocksource": "tsc", "loadavg": [0.77, 0.99, 1.17], "dmi": {}, "hvbench_version": "0.1.0", "tool_versions": {}, "fingerprint": "213e46a689ddde51", "host": "local"}');
CREATE TABLE samples (
	id INTEGER NOT NULL, 
	trial_id INTEGER NOT NULL, 
	metric VARCHAR(64) NOT NULL, 
	value FLOAT NOT NULL, 
	unit VARCHAR(32) NOT NULL, 
	higher_is_better BOOLEAN NOT NULL, 
	metadata TEXT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(trial_id) REFERENCES trials (id)
);
INSERT INTO "samples" VALUES(1,1,'events-per-second',3132.54,'events/s',1,'{}');
INSERT INTO "samples" VALUES(2,2,'events-per-second',3428.28,'events/s',1,'{}');
INSERT INTO "samples" VALUES(3,3,'events-per-second',3283.09,'events/s',1,'{}');
CREATE TABLE schema_version (
	version INTEGER NOT NULL
);
INSERT INTO "schema_version" VALUES(1);
CREATE TABLE trials (
	id INTEGER NOT NULL, 
	run_id VARCHAR(64) NOT NULL, 
	seq INTEGER NOT NULL, 
	platform VARCHAR(64) NOT NULL, 
	workload VARCHAR(64) NOT NULL, 
	repetition INTEGER NOT NULL, 
	warmup BOOLEAN NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	reason TEXT, 
	started VARCHAR(40) NOT NULL, 
	seconds FLOAT, 
	metadata TEXT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(run_id) REFERENCES runs (id)
);
INSERT INTO "trials" VALUES(1,'20261202-051809-bb22',0,'native','sysbench-cpu',-1,1,'ok',NULL,'2026-12-02T05:18:10.087+00:00',7.61030729991034604609e-02,'{"argv": [["sysbench", "cpu", "--cpu-max-prime=10000", "--threads=1", "--events=200", "--time=0", "run"]], "workload_index": 0}');
INSERT INTO "trials" VALUES(2,'20261202-051809-bb22',1,'native','sysbench-cpu',0,0,'ok',NULL,'2026-12-02T05:18:10.169+00:00',7.19179509978857822716e-02,'{"argv": [["sysbench", "cpu", "--cpu-max-prime=10000", "--threads=1", "--events=200", "--time=0", "run"]], "accounting": {"kernel": {"seconds": 0.0722, "user_share": 0.4, "system_share": 0.13333, "irq_share": 0.0, "softirq_share": 0.0, "iowait_share": 0.0, "idle_share": 0.46667, "steal_share": 0.0, "intr_per_s": 609.6, "ctxt_per_s": 692.7, "busy_cores": 1.1083}}, "workload_index": 0}');
INSERT INTO "trials" VALUES(3,'20261202-051809-bb22',2,'native','sysbench-cpu',1,0,'ok',NULL,'2026-12-02T05:18:10.244+00:00',7.24222119970363564789e-02,'{"argv": [["sysbench", "cpu", "--cpu-max-prime=10000", "--threads=1", "--events=200", "--time=0", "run"]], "accounting": {"kernel": {"seconds": 0.0727, "user_share": 0.46154, "system_share": 0.0, "irq_share": 0.0, "softirq_share": 0.0, "iowait_share": 0.0, "idle_share": 0.53846, "steal_share": 0.0, "intr_per_s": 729.3, "ctxt_per_s": 646.7, "busy_cores": 0.8256}}, "workload_index": 0}');
CREATE INDEX ix_trials_run_id ON trials (run_id);
CREATE INDEX ix_samples_trial_id ON samples (trial_id);
COMMIT;
