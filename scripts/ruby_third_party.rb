#!/usr/bin/env ruby
# frozen_string_literal: true

# Runs a Ruby suite nobody here wrote two ways and compares them test by test:
#   - the framework's own run, in one process (minitest: the test files required as `rake test`
#     requires them, then minitest/autorun; RSpec: the `rspec` command), observed by a hook that
#     records each test's id (the gem's id rule) and outcome;
#   - the gem's worker driven over the persistent protocol (`--via driver`, the default): one
#     process, every listed id in listing order, each `run` naming the next one as ciq's batches
#     do; a crash or a hang (--timeout) errors that test and a new worker goes on;
#   - or ciq itself (`--via ciq`): `ciq run -j JOBS --max-requeues 0 --test-timeout TIMEOUT
#     minitest|rspec -- ARGS` in DIR, each test's outcome read from ciq's per-test lines (a
#     test it reports twice, or not at all, is a difference). `--ciq` names the binary (default
#     target/release/ciq, else target/debug/ciq); the gem comes from RUBYLIB as for the driver.
#
#   ruby scripts/ruby_third_party.rb [--via driver|ciq] [--jobs 2] [--ciq PATH] [--timeout 300] minitest DIR [-- ARGS]
#   ruby scripts/ruby_third_party.rb [--via driver|ciq] [--jobs 2] [--ciq PATH] [--timeout 300] rspec DIR [-- ARGS]
#
# DIR is the suite's root (the worker's working directory); ARGS go to both runs, as they would
# follow `ciq run minitest|rspec --` (minitest: -I dirs, -r libraries, test files, directories
# or globs, minitest options; RSpec: anything `rspec` takes). The gem comes from this checkout's
# integrations/ruby/lib. Outcomes are compared as passed, skipped, or failed (the framework's
# own run cannot tell an error in setup or teardown, which the gem reports as errored, from a
# failure). Prints both runs' counts and wall times and every difference; exits 1 if the ids or
# any outcome differ.
require "json"
require "open3"
require "optparse"
require "rbconfig"
require "tempfile"
require "timeout"

ROOT = File.expand_path("..", __dir__)
GEM_LIB = File.join(ROOT, "integrations", "ruby", "lib")
RUBY = RbConfig.ruby

# The framework's own run records one JSON line per test in $CIQ_COMPARE_OUT. For minitest it
# is the whole program: it loads the files as the gem does, then lets minitest/autorun run them.
MINITEST_PLAIN = <<~'RUBY'
  require "json"
  require "ciq/minitest"
  dirs, requires, paths, options = Ciq::Minitest::Arguments.parse(ARGV)
  load_path = dirs + %w[test lib].select { |dir| File.directory?(dir) }
  $LOAD_PATH.unshift(*load_path.map { |dir| File.expand_path(dir) }.uniq)
  requires.each { |lib| require lib }
  out = File.open(ENV.fetch("CIQ_COMPARE_OUT"), "a")
  out.sync = true
  Minitest.singleton_class.prepend(Module.new do
    define_method(:run_one_method) do |klass, name|
      result = super(klass, name)
      outcome = result.skipped? ? "skipped" : result.passed? ? "passed" : "failed"
      out.puts(JSON.generate("id" => Ciq::Minitest.id(klass, name), "outcome" => outcome))
      result
    end
  end)
  require "minitest/autorun"
  ARGV.replace(options)
  Ciq::Minitest.test_files(paths.empty? ? ["test"] : paths).each { |file| require file }
RUBY

# For RSpec it is a formatter, added with --require and --format.
RSPEC_OBSERVER = <<~'RUBY'
  require "json"
  require "ciq/rspec"
  class CiqCompareFormatter
    RSpec::Core::Formatters.register self, :start, :example_finished

    def initialize(_output)
      @out = File.open(ENV.fetch("CIQ_COMPARE_OUT"), "a")
      @out.sync = true
    end

    # Ids are taken after loading, before any example runs (as the gem takes them).
    def start(_notification)
      @ids = Ciq::RSpec.examples(RSpec.world).to_h { |id, example| [example, id] }
    end

    def example_finished(notification)
      status = notification.example.execution_result.status
      outcome = { passed: "passed", pending: "skipped" }.fetch(status, "failed")
      @out.puts(JSON.generate("id" => @ids.fetch(notification.example), "outcome" => outcome))
    end
  end
RUBY

LAUNCH = {
  "minitest" => ["-rciq/minitest", "-e", "Ciq::Minitest.serve"],
  "rspec" => ["-rciq/rspec", "-e", "Ciq::RSpec.serve"],
}.freeze

def clock
  Process.clock_gettime(Process::CLOCK_MONOTONIC)
end

def env
  { "RUBYLIB" => [GEM_LIB, ENV["RUBYLIB"]].compact.join(File::PATH_SEPARATOR), "CIQ_PROTOCOL" => "1" }
end

# { id => outcome } from the framework's own run.
def plain_run(framework, dir, args)
  Tempfile.create("ciq-compare") do |out|
    command =
      if framework == "minitest"
        [RUBY, "-e", MINITEST_PLAIN, "--", *args]
      else
        observer = File.join(File.dirname(out.path), "ciq_compare_observer_#{Process.pid}.rb")
        File.write(observer, RSPEC_OBSERVER)
        [RUBY, "-S", "rspec", *args, "--require", observer, "--format", "progress", "--format", "CiqCompareFormatter"]
      end
    log = File.join(File.dirname(out.path), "ciq_compare_plain_#{Process.pid}.log")
    system(env.merge("CIQ_COMPARE_OUT" => out.path), *command, chdir: dir, out: log, err: [:child, :out])
    warn "framework's own run: exit status #{$?.exitstatus}; its output: #{log}"
    outcomes = {}
    File.foreach(out.path) do |line|
      record = JSON.parse(line)
      warn "framework's own run: #{record['id']} ran twice" if outcomes.key?(record["id"])
      outcomes[record["id"]] = record["outcome"]
    end
    outcomes
  end
end

# One worker process, spoken to as ciq does.
class Worker
  def initialize(framework, dir, args, log)
    @stdin, @stdout, @thread = Open3.popen2(env, RUBY, *LAUNCH.fetch(framework), "--", *args,
                                            chdir: dir, err: [log, "a"], pgroup: true)
    ready = receive(300)
    raise "the worker was not ready: #{ready.inspect} (its stderr: #{log})" unless ready&.fetch("type") == "ready"
  end

  def receive(timeout)
    line = Timeout.timeout(timeout) { @stdout.gets }
    line && JSON.parse(line)
  end

  def send_message(message)
    @stdin.puts(JSON.generate(message))
    @stdin.flush
  end

  def kill
    Process.kill("KILL", -@thread.pid)
  rescue Errno::ESRCH
    nil
  ensure
    @thread.join
  end

  def shutdown
    send_message("type" => "shutdown")
    @stdin.close
    @thread.value.exitstatus
  end
end

# { id => outcome } from the gem's worker.
def driver_run(framework, dir, args, timeout)
  log = File.join(Dir.tmpdir, "ciq_compare_worker_#{Process.pid}.log")
  File.write(log, "")
  worker = Worker.new(framework, dir, args, log)
  worker.send_message("type" => "list")
  ids = worker.receive(60).fetch("ids")
  outcomes = {}
  ids.each_with_index do |id, at|
    worker ||= Worker.new(framework, dir, args, log)
    message = { "type" => "run", "id" => id }
    message["next"] = ids[at + 1] if ids[at + 1]
    worker.send_message(message)
    result = begin
      worker.receive(timeout)
    rescue Timeout::Error
      :timeout
    end
    if result.is_a?(Hash)
      outcomes[id] = result["outcome"]
      next
    end
    warn "#{id}: #{result == :timeout ? "no result within #{timeout}s" : 'the worker died'}; errored, new worker"
    outcomes[id] = "errored"
    worker.kill
    worker = nil
  end
  status = worker&.shutdown
  warn "gem worker: exit status #{status.inspect} at shutdown; its stderr: #{log}"
  outcomes
end

# { id => outcome } from `ciq run -j JOBS <framework> -- ARGS`, from its per-test lines on
# stderr (`PASS [  0.012s] w1: Id`).
CIQ_OUTCOMES = { "PASS" => "passed", "FAIL" => "failed", "ERROR" => "errored", "SKIP" => "skipped", "FLAKY" => "passed" }.freeze

def ciq_run(ciq, jobs, framework, dir, args, timeout)
  log = File.join(Dir.tmpdir, "ciq_compare_ciq_#{Process.pid}.log")
  command = [ciq, "run", "-j", jobs.to_s, "--max-requeues", "0", "--test-timeout", "#{timeout}s", framework, "--", *args]
  system(env, *command, chdir: dir, out: log, err: [:child, :out])
  warn "ciq: exit status #{$?.exitstatus}; its output: #{log}"
  outcomes = {}
  File.foreach(log) do |line|
    match = line.match(/\A\s*(#{CIQ_OUTCOMES.keys.join('|')}) \[\s*[\d.]+s\] [^:]+: (.*)\n?\z/) or next
    warn "ciq: #{match[2]} decided twice" if outcomes.key?(match[2])
    outcomes[match[2]] = CIQ_OUTCOMES.fetch(match[1])
  end
  outcomes
end

def counts(outcomes)
  tally = outcomes.values.tally
  "#{outcomes.size} tests: " + %w[passed failed errored skipped].map { |o| "#{tally.fetch(o, 0)} #{o}" }.join(", ")
end

BUCKET = { "passed" => "passed", "skipped" => "skipped", "failed" => "failed", "errored" => "failed" }.freeze

via = "driver"
timeout = 300
jobs = 2
ciq = %w[release debug].map { |profile| File.join(ROOT, "target", profile, "ciq") }.find { |path| File.executable?(path) }
parser = OptionParser.new do |opts|
  opts.banner = "usage: ruby scripts/ruby_third_party.rb [--via driver|ciq] [--jobs N] [--ciq PATH] [--timeout S] minitest|rspec DIR [-- ARGS]"
  opts.on("--via MODE", %w[driver ciq], "how the gem runs the suite (driver: one worker process, here; ciq: ciq run)") { |v| via = v }
  opts.on("--jobs N", Integer, "ciq's local workers (default 2)") { |v| jobs = v }
  opts.on("--ciq PATH", "the ciq binary (default target/release/ciq, else target/debug/ciq)") { |v| ciq = v }
  opts.on("--timeout SECONDS", Integer, "a test without a result by then is errored (default 300)") { |v| timeout = v }
end
framework, dir, *args = parser.parse(ARGV)
abort parser.banner unless LAUNCH.key?(framework) && dir && File.directory?(dir)
abort "no ciq binary: build it (cargo build --release) or give --ciq PATH" if via == "ciq" && !(ciq && File.executable?(ciq))
dir = File.expand_path(dir)

started = clock
plain = plain_run(framework, dir, args)
plain_time = clock - started
started = clock
ours = via == "ciq" ? ciq_run(File.expand_path(ciq), jobs, framework, dir, args, timeout) : driver_run(framework, dir, args, timeout)
ours_time = clock - started

puts format("%-22s %s (%.1f s)", "#{framework}'s own run:", counts(plain), plain_time)
puts format("%-22s %s (%.1f s)", via == "ciq" ? "ciq run -j #{jobs}:" : "the gem (driver):", counts(ours), ours_time)
puts format("%-22s %.2fx", "wall time ratio:", ours_time / plain_time)
differences = (plain.keys | ours.keys).filter_map do |id|
  if !ours.key?(id) then "only in #{framework}'s own run (#{plain[id]}): #{id}"
  elsif !plain.key?(id) then "only in the gem's run (#{ours[id]}): #{id}"
  elsif BUCKET.fetch(plain[id]) != BUCKET.fetch(ours[id]) then "#{framework}: #{plain[id]}, gem: #{ours[id]}: #{id}"
  end
end
if differences.empty?
  puts "equal: the same #{ours.size} ids, each with the same outcome"
else
  puts "#{differences.size} differences:", differences.map { |line| "  #{line}" }
  exit 1
end
