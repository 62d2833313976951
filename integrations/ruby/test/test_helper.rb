# frozen_string_literal: true

# Drives the installed gem as ciq does: `ruby -rciq/<framework> -e ... -- args` as a child
# process, JSON lines over its stdin and stdout, stderr to a file.
#
# The gem is built from this checkout and installed into a temporary GEM_HOME once per run,
# so the tests exercise the packaged gem (its file list included), as ciq will start it.

require "minitest/autorun"
require "fileutils"
require "json"
require "open3"
require "tempfile"
require "timeout"
require "tmpdir"

module GemTest
  REPO = File.expand_path("../../..", __dir__)
  GEM_DIR = File.expand_path("..", __dir__)
  FIXTURES = File.join(REPO, "tests", "fixtures", "ruby")
  MINITEST_SUITE = File.join(FIXTURES, "minitest_suite")
  RSPEC_SUITE = File.join(FIXTURES, "rspec_suite")
  # No answer within this long means the worker hangs: fail instead of blocking the run.
  TIMEOUT = 60
  # CIQ_RUBY_TEST_MINITEST=5.15.0 runs the workers on that minitest instead of the newest
  # installed (Debian's Ruby 3.1 ships 5.15.0 as a bundled gem, ruby-minitest 5.17.0).
  MINITEST_PIN = ENV["CIQ_RUBY_TEST_MINITEST"]
  # The launch commands, as integrations/ruby/README.md gives them to ciq.
  LAUNCH = {
    "minitest" => if MINITEST_PIN
                    ["ruby", "-e", "gem 'minitest', '#{MINITEST_PIN}'; require 'ciq/minitest'; Ciq::Minitest.serve", "--"]
                  else
                    ["ruby", "-rciq/minitest", "-e", "Ciq::Minitest.serve", "--"]
                  end,
    "rspec" => ["ruby", "-rciq/rspec", "-e", "Ciq::RSpec.serve", "--"],
  }.freeze
  MINITEST_VERSION = MINITEST_PIN || Minitest::VERSION

  def self.expected(suite)
    JSON.parse(File.read(File.join(suite, "expected.json")))
  end

  # A GEM_HOME holding the gem built from this checkout.
  def self.gem_home
    @gem_home ||= begin
      dir = Dir.mktmpdir("ciq-ruby-gems")
      pid = Process.pid
      at_exit { FileUtils.rm_rf(dir) if Process.pid == pid }
      gem = File.join(dir, "ciq-ruby.gem")
      run!({}, "gem", "build", "ciq-ruby.gemspec", "--output", gem, chdir: GEM_DIR)
      run!({ "GEM_HOME" => dir }, "gem", "install", "--local", "--no-document", gem)
      dir
    end
  end

  def self.run!(env, *command, **options)
    output, status = Open3.capture2e(env, *command, **options)
    raise "#{command.join(' ')} failed:\n#{output}" unless status.success?

    output
  end

  # The environment of a worker: the gem's GEM_HOME, and nothing of the outer Ruby's settings.
  def self.env(extra = {})
    { "GEM_HOME" => gem_home, "RUBYOPT" => nil, "RUBYLIB" => nil, "BUNDLE_GEMFILE" => nil,
      "CIQ_PROTOCOL" => "1", "CIQ_RUBY_FIXTURE_BOOT_SECONDS" => "0" }.merge(extra)
  end

  # One persistent worker process, spoken to as ciq does.
  class Worker
    attr_reader :pid

    def initialize(framework, dir, *args, env: {}, command: LAUNCH.fetch(framework))
      @stderr = Tempfile.new("ciq-worker-stderr")
      input, @input = IO.pipe
      @output, output = IO.pipe
      # Its own process group, as ciq starts it, so a kill takes its children too.
      @pid = Process.spawn(GemTest.env(env), *command, *args,
                           chdir: dir, in: input, out: output, err: @stderr.path, pgroup: true)
      input.close
      output.close
      @lines = Queue.new
      @reader = Thread.new do
        @output.each_line { |line| @lines << line }
      rescue IOError
        nil
      ensure
        @lines << nil
      end
      @status = nil
    end

    def send_message(message)
      send_raw("#{JSON.generate(message)}\n")
    end

    def send_raw(data)
      @input.write(data)
      @input.flush
    end

    # Whether a message (or EOF) comes within `seconds`.
    def answers_within?(seconds)
      Timeout.timeout(seconds) { sleep 0.05 while @lines.empty? }
      true
    rescue Timeout::Error
      false
    end

    # The next protocol message, nil at EOF. Every stdout line must be one.
    def receive
      line = begin
        Timeout.timeout(TIMEOUT) { @lines.pop }
      rescue Timeout::Error
        raise Minitest::Assertion, "no message within #{TIMEOUT}s; stderr:\n#{stderr}"
      end
      return nil if line.nil?
      raise Minitest::Assertion, "unterminated line on stdout: #{line.inspect}" unless line.end_with?("\n")

      message = begin
        JSON.parse(line)
      rescue JSON::ParserError
        raise Minitest::Assertion, "stdout carries a non-protocol line: #{line.inspect}\nstderr:\n#{stderr}"
      end
      raise Minitest::Assertion, "not a JSON object: #{line.inspect}" unless message.is_a?(Hash)

      message
    end

    def ready
      message = receive
      raise Minitest::Assertion, "expected ready, got #{message.inspect}; stderr:\n#{stderr}" unless message&.fetch("type") == "ready"

      message
    end

    # The message of the fatal the worker sends instead of ready.
    def fatal
      message = receive
      raise Minitest::Assertion, "expected fatal, got #{message.inspect}; stderr:\n#{stderr}" unless message&.fetch("type") == "fatal"
      raise Minitest::Assertion, "fatal with extra fields: #{message.inspect}" unless message.keys.sort == %w[message type]

      message["message"]
    end

    def list
      send_message("type" => "list")
      message = receive
      raise Minitest::Assertion, "expected list, got #{message.inspect}" unless message&.fetch("type") == "list"

      message["ids"]
    end

    def run(id, next_id: nil, keep: false)
      message = { "type" => "run", "id" => id }
      message["next"] = next_id if next_id
      message["keep"] = true if keep
      send_message(message)
      result = receive
      raise Minitest::Assertion, "EOF instead of a result for #{id}; stderr:\n#{stderr}" if result.nil?
      unless result["type"] == "result" && result["id"] == id
        raise Minitest::Assertion, "expected the result of #{id}, got #{result.inspect}"
      end
      unless result["duration"].is_a?(Float) && result["duration"] >= 0 && result["output"].is_a?(String) &&
             %w[passed failed skipped errored].include?(result["outcome"])
        raise Minitest::Assertion, "malformed result: #{result.inspect}"
      end

      result
    end

    def settle
      send_message("type" => "settle")
      message = receive
      raise Minitest::Assertion, "expected settled, got #{message.inspect}" unless message&.fetch("type") == "settled"

      message
    end

    def shutdown
      send_message("type" => "shutdown")
      wait
    end

    def close_stdin
      @input.close
    end

    # The exit status, once stdout held nothing more than protocol messages.
    def wait
      rest = []
      while (message = receive)
        rest << message
      end
      raise Minitest::Assertion, "unexpected messages: #{rest.inspect}" unless rest.empty?

      exit_status
    end

    def exit_status
      @status ||= Timeout.timeout(TIMEOUT) { Process.wait2(@pid).last }
      @status.exitstatus || -@status.termsig
    end

    def stderr
      File.read(@stderr.path)
    end

    def kill
      begin
        Process.kill("KILL", -@pid) if @status.nil?
      rescue Errno::ESRCH
        nil
      end
      @status ||= Process.wait2(@pid).last
    rescue Errno::ECHILD
      nil
    ensure
      [@input, @output].each { |io| io.close unless io.closed? }
      @reader.join(5)
      @stderr.close!
    end
  end

  # Starts workers and kills whatever is left of them after each test.
  module Workers
    def setup
      super
      @workers = []
      @state = Dir.mktmpdir("ciq-ruby-state")
      @dirs = [@state]
    end

    def teardown
      @workers.each(&:kill)
      @dirs.each { |dir| FileUtils.rm_rf(dir) }
      super
    end

    # A worker on `dir`, with a fresh fixture state dir unless `env` names one.
    def start(framework, dir, *args, env: {}, **options)
      worker = Worker.new(framework, dir, *args, env: { "CIQ_RUBY_FIXTURE_DIR" => @state }.merge(env), **options)
      @workers << worker
      worker
    end

    # Lines of a counter file in the fixture state dir.
    def counted(name)
      path = File.join(@state, name)
      File.exist?(path) ? File.readlines(path, chomp: true) : []
    end

    # A suite of its own, written to a temporary directory.
    def write_suite(files)
      dir = Dir.mktmpdir("ciq-ruby-suite")
      @dirs << dir
      files.each do |name, text|
        path = File.join(dir, name)
        FileUtils.mkdir_p(File.dirname(path))
        File.write(path, text)
      end
      dir
    end
  end
end
