--
-- PostgreSQL database dump
--

\restrict daCyMvIIrzwBjUVNAfpdJwYztKKZDlU5QypUGX6NhmBCDHJZsrRwnYiH1PgSarD

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: run_platforms; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.run_platforms (
    run_id character varying(64) NOT NULL,
    platform character varying(64) NOT NULL,
    info text NOT NULL
);


--
-- Name: runs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.runs (
    id character varying(64) NOT NULL,
    created character varying(40) NOT NULL,
    finished character varying(40),
    status character varying(20) NOT NULL,
    hvbench_version character varying(40) NOT NULL,
    fingerprint character varying(64),
    campaign text NOT NULL,
    plan text NOT NULL,
    host text NOT NULL
);


--
-- Name: samples; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.samples (
    id integer NOT NULL,
    trial_id integer NOT NULL,
    metric character varying(64) NOT NULL,
    value double precision NOT NULL,
    unit character varying(32) NOT NULL,
    higher_is_better boolean NOT NULL,
    metadata text NOT NULL
);


--
-- Name: samples_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.samples_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: samples_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.samples_id_seq OWNED BY public.samples.id;


--
-- Name: schema_version; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_version (
    version integer NOT NULL
);


--
-- Name: trials; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.trials (
    id integer NOT NULL,
    run_id character varying(64) NOT NULL,
    seq integer NOT NULL,
    platform character varying(64) NOT NULL,
    workload character varying(64) NOT NULL,
    repetition integer NOT NULL,
    warmup boolean NOT NULL,
    status character varying(20) NOT NULL,
    reason text,
    started character varying(40) NOT NULL,
    seconds double precision,
    metadata text NOT NULL
);


--
-- Name: trials_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.trials_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: trials_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.trials_id_seq OWNED BY public.trials.id;


--
-- Name: samples id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.samples ALTER COLUMN id SET DEFAULT nextval('public.samples_id_seq'::regclass);


--
-- Name: trials id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.trials ALTER COLUMN id SET DEFAULT nextval('public.trials_id_seq'::regclass);


--
-- Data for Name: run_platforms; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.run_platforms (run_id, platform, info) FROM stdin;
20261202-051809-bb22	native	{"platform": {"name": "native", "kind": "NativePlatform"}, "machine": {"scratch_dir": "/tmp/v1/home/scratch/hvbench-w1469y04"}, "system": {"cpu_model": "AMD EPYC", "cpu_logical": 2, "cpu_mhz": 2445.432, "cpu_flags": ["3dnowprefetch", "abm", "adx", "aes", "apic", "arat", "avx", "avx2", "bmi1", "bmi2", "clflush", "clflushopt", "clwb", "clzero", "cmov", "cmp_legacy", "constant_tsc", "cpuid", "cr8_legacy", "cx16", "cx8", "de", "erms", "extd_apicid", "f16c", "fma", "fpu", "fsgsbase", "fsrm", "fxsr", "fxsr_opt", "ht", "hypervisor", "invpcid", "lahf_lm", "lm", "mca", "mce", "misalignsse", "mmx", "mmxext", "movbe", "msr", "mtrr", "nonstop_tsc", "nopl", "nx", "osvw", "pae", "pat", "pcid", "pclmulqdq", "pdpe1gb", "pge", "pni", "popcnt", "pse", "pse36", "rdpid", "rdrand", "rdseed", "rdtscp", "rep_good", "sep", "sha_ni", "smap", "smep", "sse", "sse2", "sse4_1", "sse4_2", "sse4a", "ssse3", "syscall", "topoext", "tsc", "tsc_adjust", "tsc_deadline_timer", "tsc_known_freq", "umip", "vaes", "vme", "vmmcall", "vpclmulqdq", "x2apic", "xgetbv1", "xsave", "xsavec", "xsaveerptr", "xsaveopt", "xsaves", "xtopology"], "cpu_flags_notable": ["hypervisor", "avx", "avx2", "aes", "sha_ni", "constant_tsc", "nonstop_tsc", "rdtscp", "pdpe1gb", "x2apic"], "memory_bytes": 25276059648, "kernel": "Linux 6.18.44-fc-v857 x86_64", "hostname": "vm", "distro": "Debian GNU/Linux 12 (bookworm)", "virtualization": "docker", "governor": null, "turbo": null, "clocksource": "tsc", "loadavg": [0.77, 0.99, 1.17], "dmi": {}, "hvbench_version": "0.1.0", "tool_versions": {"sysbench": "sysbench 1.0.20", "deb:sysbench": "1.0.20+ds-5"}, "fingerprint": "213e46a689ddde51"}}
\.


--
-- Data for Name: runs; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.runs (id, created, finished, status, hvbench_version, fingerprint, campaign, plan, host) FROM stdin;
20261202-051809-bb22	2026-12-02T05:18:10.034+00:00	2026-12-02T05:18:10.323+00:00	complete	0.1.0	213e46a689ddde51	{"platforms": [{"name": "native", "kind": null, "settings": {}, "host": null, "matrix": null, "family": null, "levels": null}], "workloads": [{"name": "sysbench-cpu", "params": {"events": 200}}], "reps": 2, "ci_target": 0.02, "min_reps": 6, "max_reps": 30, "max_seconds": 900.0, "budget": null, "margin": 0.02, "warmup": true, "fresh_guest": false, "seed": 1, "timeout": null, "baseline": null, "host": "local", "host_settings": {}, "forks": 10, "lock_timeout": null, "ssh_identity": null, "accept_new_host_key": false, "store": null}	[{"seq": 0, "platform": "native", "workload": "sysbench-cpu", "workload_index": 0, "params": {"events": 200}, "repetition": -1, "warmup": true}, {"seq": 1, "platform": "native", "workload": "sysbench-cpu", "workload_index": 0, "params": {"events": 200}, "repetition": 0, "warmup": false}, {"seq": 2, "platform": "native", "workload": "sysbench-cpu", "workload_index": 0, "params": {"events": 200}, "repetition": 1, "warmup": false}]	{"cpu_model": "AMD EPYC", "cpu_logical": 2, "cpu_mhz": 2445.432, "cpu_flags": ["3dnowprefetch", "abm", "adx", "aes", "apic", "arat", "avx", "avx2", "bmi1", "bmi2", "clflush", "clflushopt", "clwb", "clzero", "cmov", "cmp_legacy", "constant_tsc", "cpuid", "cr8_legacy", "cx16", "cx8", "de", "erms", "extd_apicid", "f16c", "fma", "fpu", "fsgsbase", "fsrm", "fxsr", "fxsr_opt", "ht", "hypervisor", "invpcid", "lahf_lm", "lm", "mca", "mce", "misalignsse", "mmx", "mmxext", "movbe", "msr", "mtrr", "nonstop_tsc", "nopl", "nx", "osvw", "pae", "pat", "pcid", "pclmulqdq", "pdpe1gb", "pge", "pni", "popcnt", "pse", "pse36", "rdpid", "rdrand", "rdseed", "rdtscp", "rep_good", "sep", "sha_ni", "smap", "smep", "sse", "sse2", "sse4_1", "sse4_2", "sse4a", "ssse3", "syscall", "topoext", "tsc", "tsc_adjust", "tsc_deadline_timer", "tsc_known_freq", "umip", "vaes", "vme", "vmmcall", "vpclmulqdq", "x2apic", "xgetbv1", "xsave", "xsavec", "xsaveerptr", "xsaveopt", "xsaves", "xtopology"], "cpu_flags_notable": ["hypervisor", "avx", "avx2", "aes", "sha_ni", "constant_tsc", "nonstop_tsc", "rdtscp", "pdpe1gb", "x2apic"], "memory_bytes": 25276059648, "kernel": "Linux 6.18.44-fc-v857 x86_64", "hostname": "vm", "distro": "Debian GNU/Linux 12 (bookworm)", "virtualization": "docker", "governor": null, "turbo": null, "clocksource": "tsc", "loadavg": [0.77, 0.99, 1.17], "dmi": {}, "hvbench_version": "0.1.0", "tool_versions": {}, "fingerprint": "213e46a689ddde51", "host": "local"}
\.


--
-- Data for Name: samples; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.samples (id, trial_id, metric, value, unit, higher_is_better, metadata) FROM stdin;
1	1	events-per-second	3132.54	events/s	t	{}
2	2	events-per-second	3428.28	events/s	t	{}
3	3	events-per-second	3283.09	events/s	t	{}
\.


--
-- Data for Name: schema_version; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.schema_version (version) FROM stdin;
1
\.


--
-- Data for Name: trials; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.trials (id, run_id, seq, platform, workload, repetition, warmup, status, reason, started, seconds, metadata) FROM stdin;
1	20261202-051809-bb22	0	native	sysbench-cpu	-1	t	ok	\N	2026-12-02T05:18:10.087+00:00	0.07610307299910346	{"argv": [["sysbench", "cpu", "--cpu-max-prime=10000", "--threads=1", "--events=200", "--time=0", "run"]], "workload_index": 0}
2	20261202-051809-bb22	1	native	sysbench-cpu	0	f	ok	\N	2026-12-02T05:18:10.169+00:00	0.07191795099788578	{"argv": [["sysbench", "cpu", "--cpu-max-prime=10000", "--threads=1", "--events=200", "--time=0", "run"]], "accounting": {"kernel": {"seconds": 0.0722, "user_share": 0.4, "system_share": 0.13333, "irq_share": 0.0, "softirq_share": 0.0, "iowait_share": 0.0, "idle_share": 0.46667, "steal_share": 0.0, "intr_per_s": 609.6, "ctxt_per_s": 692.7, "busy_cores": 1.1083}}, "workload_index": 0}
3	20261202-051809-bb22	2	native	sysbench-cpu	1	f	ok	\N	2026-12-02T05:18:10.244+00:00	0.07242221199703636	{"argv": [["sysbench", "cpu", "--cpu-max-prime=10000", "--threads=1", "--events=200", "--time=0", "run"]], "accounting": {"kernel": {"seconds": 0.0727, "user_share": 0.46154, "system_share": 0.0, "irq_share": 0.0, "softirq_share": 0.0, "iowait_share": 0.0, "idle_share": 0.53846, "steal_share": 0.0, "intr_per_s": 729.3, "ctxt_per_s": 646.7, "busy_cores": 0.8256}}, "workload_index": 0}
\.


--
-- Name: samples_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.samples_id_seq', 3, true);


--
-- Name: trials_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.trials_id_seq', 3, true);


--
-- Name: run_platforms run_platforms_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.run_platforms
    ADD CONSTRAINT run_platforms_pkey PRIMARY KEY (run_id, platform);


--
-- Name: runs runs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.runs
    ADD CONSTRAINT runs_pkey PRIMARY KEY (id);


--
-- Name: samples samples_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.samples
    ADD CONSTRAINT samples_pkey PRIMARY KEY (id);


--
-- Name: trials trials_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.trials
    ADD CONSTRAINT trials_pkey PRIMARY KEY (id);


--
-- Name: ix_samples_trial_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_samples_trial_id ON public.samples USING btree (trial_id);


--
-- Name: ix_trials_run_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_trials_run_id ON public.trials USING btree (run_id);


--
-- Name: run_platforms run_platforms_run_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.run_platforms
    ADD CONSTRAINT run_platforms_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(id);


--
-- Name: samples samples_trial_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.samples
    ADD CONSTRAINT samples_trial_id_fkey FOREIGN KEY (trial_id) REFERENCES public.trials(id);


--
-- Name: trials trials_run_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.trials
    ADD CONSTRAINT trials_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(id);


--
-- PostgreSQL database dump complete
--

\unrestrict daCyMvIIrzwBjUVNAfpdJwYztKKZDlU5QypUGX6NhmBCDHJZsrRwnYiH1PgSarD

