# frozen_string_literal: true

require "json"

module Ciq
  # ciq sent something that is not a protocol message.
  class ProtocolError < StandardError; end

  # The protocol channel: JSON lines from ciq on one descriptor, JSON lines to ciq on another,
  # both private to this process, so that nothing a test does can read or write them.
  class Channel
    # Moves the protocol off fds 0 and 1 before any test code loads.
    #
    # The channel keeps its own duplicates of them. Ruby opens every descriptor it creates
    # close-on-exec, so a subprocess started by a test never holds the protocol pipes, and ciq
    # sees EOF as soon as this process dies. fd 1 then points at stderr, where ciq keeps stray
    # output (prints, C extensions, subprocesses) as the crash output; fd 0 reads /dev/null,
    # so a test reading stdin gets EOF instead of ciq's messages.
    def self.take_over_stdio
      $stdout.flush
      Ciq.stderr # taken now, before any test can replace or close stderr
      channel = new(STDIN.dup, STDOUT.dup)
      STDOUT.reopen(STDERR)
      STDIN.reopen(File::NULL)
      channel
    end

    def initialize(input, output)
      @input = input.binmode # bytes: a line that is not UTF-8 is a protocol error, not a crash
      @output = output
      @output.sync = true
      @owner = Process.pid
      Channel.current = self
    end

    class << self
      # The channel of this process, which a forked child closes (see ForkGuard).
      attr_accessor :current
    end

    # The next message from ciq, or nil at EOF. Blank lines are skipped.
    def receive
      guard_owner
      loop do
        line = @input.gets
        return nil if line.nil?
        next if line.strip.empty?

        return parse(line)
      end
    end

    # Writes one message as one line, at once.
    def send_message(message)
      guard_owner
      @output.write(JSON.generate(Ciq.clean(message)) + "\n")
    end

    # Closes this process's copies of the channel (a forked child's, or at exit).
    def close
      [@input, @output].each { |io| io.close unless io.closed? }
    end

    private

    def parse(line)
      text = line.dup.force_encoding(Encoding::UTF_8)
      raise ProtocolError, "not UTF-8: #{line[0, 200].inspect}" unless text.valid_encoding?

      message = begin
        JSON.parse(text)
      rescue JSON::ParserError => e
        raise ProtocolError, "not a JSON line: #{text[0, 200].inspect}: #{e.message.lines.first&.strip}"
      end
      raise ProtocolError, "not a JSON object: #{text[0, 200].inspect}" unless message.is_a?(Hash)

      message
    end

    # A forked copy of the worker (a test that forks without exec and returns into the serve
    # loop) must never speak for it: it ends quietly, without the at_exit handlers it shares
    # with the worker.
    def guard_owner
      Kernel.exit!(0) unless Process.pid == @owner
    end
  end

  # Closes the protocol channel in forked children (Ruby >= 3.1 calls Process._fork for every
  # fork), so a child that outlives the worker does not keep ciq waiting for EOF.
  module ForkGuard
    def _fork
      pid = super
      Channel.current&.close if pid.zero?
      pid
    end
  end
  Process.singleton_class.prepend(ForkGuard) if Process.respond_to?(:_fork)

  # A private copy of stderr for the gem's own messages and the frameworks' reports: no test
  # can close it, replace it, or have it captured as its output.
  def self.stderr
    @stderr ||= STDERR.dup.tap { |io| io.sync = true }
  end

  # Makes every string of a message encodable as JSON: bytes that are not UTF-8 (a test's
  # binary output) become visible escapes (\xFF) instead of failing the whole message.
  def self.clean(value)
    case value
    when String
      text = utf8(value)
      text.valid_encoding? ? text : text.scrub { |bytes| bytes.unpack("C*").map { |b| format("\\x%02X", b) }.join }
    when Hash then value.transform_values { |v| clean(v) }
    when Array then value.map { |v| clean(v) }
    else value
    end
  end

  # Binary strings (output read from IO) are taken as UTF-8 bytes; other encodings converted.
  def self.utf8(value)
    return value if value.encoding == Encoding::UTF_8
    return value.dup.force_encoding(Encoding::UTF_8) if value.encoding == Encoding::BINARY || value.ascii_only?

    value.encode(Encoding::UTF_8, invalid: :replace, undef: :replace)
  end
end
