# frozen_string_literal: true

require_relative "version"
require_relative "channel"
require_relative "output"

module Ciq
  # Raised by a framework adapter that cannot serve (a file that does not load, bad
  # arguments): its message is the `fatal` message.
  class Fatal < StandardError; end

  # Serves protocol v1 for one framework adapter: loads the suite through it, says `ready`,
  # then answers `list`, `run`, `settle` and `shutdown` until ciq is done.
  #
  # An adapter (Ciq::Minitest::Adapter, Ciq::RSpec::Adapter) loads the suite in `new(argv)`
  # and answers:
  # - `framework`, `framework_version`, `ids` (every id, in listing order);
  # - `prepare(id)`: tears down what the last kept test left up that `id` does not share
  #   (everything but the suite for an unknown id); returns a `previous` hash if that failed;
  # - `execute(id, next_id, keep)`: runs a known test, returns [outcome, output, kept];
  # - `settle`: tears everything down, suite included; returns a `previous` hash or nil;
  # - `finish`: ends the session (hooks, reports); returns the exit status.
  class Server
    # Exit statuses (README, "Exit statuses").
    EXIT_OK = 0
    EXIT_TEARDOWN_FAILED = 1
    EXIT_FATAL = 2
    EXIT_PROTOCOL_ERROR = 3

    # Takes over stdio, loads the suite with `adapter_class.new(argv)`, serves, and exits.
    def self.serve(adapter_class, argv)
      channel = Channel.take_over_stdio
      output = Output.new
      adapter = load_suite(channel, adapter_class, argv)
      status = new(channel, output, adapter).serve
      channel.close # ciq sees EOF now, not after the suite's own at_exit handlers
      exit(status)
    end

    def self.load_suite(channel, adapter_class, argv)
      adapter_class.new(argv.dup)
    rescue Fatal => e
      fatal(channel, e.message)
    rescue SystemExit => e
      # A helper or test file that calls exit (or abort) while loading, or a framework that
      # stops on bad options (it printed why on stderr; abort's message is the exception's).
      reason = e.message == "exit" ? "exit status #{e.status}" : e.message
      fatal(channel, "#{adapter_class.framework} stopped while loading the tests (#{reason}); its stderr says why")
    rescue ScriptError, StandardError => e
      fatal(channel, "#{adapter_class.framework} could not load the tests: #{Ciq.describe(e)}")
    end

    def self.fatal(channel, message)
      Ciq.stderr.puts "ciq: #{message}"
      channel.send_message({ "type" => "fatal", "message" => message })
      channel.close
      Kernel.exit!(EXIT_FATAL) # no at_exit handler of a half-loaded suite runs
    end

    def initialize(channel, output, adapter)
      @channel = channel
      @output = output
      @adapter = adapter
      @ids = adapter.ids
      @known = @ids.to_h { |id| [id, true] }
    end

    # Answers ciq until shutdown or EOF; returns the exit status.
    def serve
      @channel.send_message(
        "type" => "ready", "protocol" => PROTOCOL_VERSION, "framework" => @adapter.framework,
        "framework_version" => @adapter.framework_version, "tests" => @ids.size,
        # ciq may ask this process for the ids instead of listing them some other way.
        "lists" => true
      )
      loop do
        message = @channel.receive
        break if message.nil? || message["type"] == "shutdown"

        case message["type"]
        when "list" then @channel.send_message({ "type" => "list", "ids" => @ids })
        when "run" then @channel.send_message(run(message))
        when "settle" then @channel.send_message(with_previous({ "type" => "settled" }) { @adapter.settle })
        end # other types are ignored: a newer ciq may send more
      end
      @adapter.finish
    rescue ProtocolError => e
      Ciq.stderr.puts "ciq protocol error: #{e.message}"
      EXIT_PROTOCOL_ERROR
    rescue Errno::EPIPE, IOError
      @adapter.finish # ciq is gone: nobody to answer; end the session quietly
    end

    private

    def run(message)
      id = message["id"]
      raise ProtocolError, "run message without a string id: #{JSON.generate(message)[0, 200]}" unless id.is_a?(String)

      result = with_previous({ "type" => "result", "id" => id }) { @adapter.prepare(id) }
      unless @known[id]
        return result.merge(
          "outcome" => "errored", "duration" => 0.0,
          "output" => "ciq: unknown test id #{id.inspect}: not among the #{@ids.size} tests this " \
                      "#{@adapter.framework} process loaded (renamed, removed, filtered out, or " \
                      "loaded with other arguments?)\n"
        )
      end
      next_id = message["next"].is_a?(String) && @known[message["next"]] ? message["next"] : nil
      result.merge(execute(id, next_id, next_id.nil? && message["keep"] == true))
    end

    # Runs one test, whatever it does: output captured, `exit` turned into an error.
    def execute(id, next_id, keep)
      @output.reset_streams
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      @output.start
      begin
        outcome, output, kept = @adapter.execute(id, next_id, keep)
      rescue SystemExit => e
        # In a plain run this would end the run; here the worker goes on with the next test.
        outcome = "errored"
        output = "ciq: the test called exit (status #{e.status}); its teardown may not have run\n"
      rescue ScriptError, StandardError => e
        outcome = "errored"
        output = "ciq: running the test failed outside the test framework: #{Ciq.describe(e)}\n"
      ensure
        captured = @output.stop
      end
      duration = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
      output += "----- output -----\n#{Ciq.clean(captured)}" if %w[failed errored].include?(outcome) && !captured.empty?
      { "outcome" => outcome, "duration" => duration, "output" => output }.tap { |r| r["kept"] = true if kept }
    end

    # The message, with the `previous` the block returns (a kept test's teardown that failed),
    # and the output written during that teardown added to it.
    def with_previous(message)
      @output.reset_streams
      @output.start
      begin
        previous = yield
      ensure
        captured = @output.stop
      end
      return message unless previous

      previous = previous.merge("output" => "#{previous['output']}----- output -----\n#{Ciq.clean(captured)}") unless captured.empty?
      message.merge("previous" => previous)
    end
  end

  # An exception as one block of text: class, message, backtrace.
  def self.describe(error)
    lines = ["#{error.class}: #{error.message}"]
    lines.concat((error.backtrace || []).first(30).map { |line| "    #{line}" })
    "#{lines.join("\n")}\n"
  end
end
