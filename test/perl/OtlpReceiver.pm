# test/perl/OtlpReceiver.pm: a small OTLP/HTTP receiver on loopback, for the
# tracing TAP test (test/t/050_tracing.pl).  (The benchmark,
# test/bench/run_tracing.sh, uses the cheaper test/bench/otlp_sink.pl.)
#
#   my $rx = OtlpReceiver::start($dir, keep => 1);   # forks; returns
#       { pid, port, url, dir }; url is http://127.0.0.1:<port>/v1/traces
#   OtlpReceiver::set_mode($dir, 'ok' | '503' | '503bin' | 'slow' | 'hang');
#   OtlpReceiver::stop($rx);
#
# One request at a time, "Connection: close".  In mode "ok" it answers 200
# and, with keep => 1, writes each request to $dir/req-NNNNNN.json as
# {path, content_type, content_types (how many Content-Type lines), body};
# it always counts requests and body bytes in
# $dir/count ("requests bytes", rewritten after each).  "503" answers
# Service Unavailable ("503bin": with a body of non-ASCII and control
# bytes); "slow" sleeps 3 s before answering 200 (and keeps
# nothing); "hang" writes $dir/hung and sleeps 600 s (a hung collector).  The mode is read from $dir/mode for every request.
package OtlpReceiver;

use strict;
use warnings;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();

# receivers started by this process, stopped at its exit even when a test
# dies (a receiver left running would keep prove's output pipe open)
my %running;
my $owner_pid = $$;

END
{
	if ($$ == $owner_pid)
	{
		kill 'KILL', keys %running;
		waitpid $_, 0 for keys %running;
	}
}

sub set_mode
{
	my ($dir, $mode) = @_;
	open my $fh, '>', "$dir/mode.tmp" or die "$dir/mode.tmp: $!";
	print $fh $mode;
	close $fh;
	rename "$dir/mode.tmp", "$dir/mode" or die "rename: $!";
}

sub get_mode
{
	my ($dir) = @_;
	open my $fh, '<', "$dir/mode" or return 'ok';
	my $m = <$fh>;
	close $fh;
	return $m // 'ok';
}

sub write_file
{
	my ($path, $content) = @_;
	open my $fh, '>', "$path.tmp" or die "$path.tmp: $!";
	print $fh $content;
	close $fh;
	rename "$path.tmp", $path or die "rename: $!";
}

# Serve one connection: read the request, answer per the mode.
sub serve_one
{
	my ($c, $dir, $keep, $state) = @_;
	my $reqline = <$c>;
	return unless defined $reqline;
	my %h;
	while (my $line = <$c>)
	{
		$line =~ s/\r?\n$//;
		last if $line eq '';
		my ($k, $v) = split /:\s*/, $line, 2;
		$h{ lc $k } = $v;
		$h{ 'count-' . lc $k }++;
	}
	my $len = $h{'content-length'} // 0;
	my $body = '';
	while (length($body) < $len)
	{
		my $r = read($c, $body, $len - length($body), length($body));
		last unless $r;
	}
	my $mode = get_mode($dir);
	my ($code, $text, $resp) = (200, 'OK', '{}');
	if ($mode eq '503')
	{
		($code, $text, $resp) = (503, 'Service Unavailable', 'collector overloaded');
	}
	elsif ($mode eq '503bin')
	{
		($code, $text, $resp) = (503, 'Service Unavailable', "\xff\xfe\x01 bad \xc3\xa9 bytes");
	}
	elsif ($mode eq 'slow')
	{
		sleep 3;
	}
	elsif ($mode eq 'hang')
	{
		write_file("$dir/hung", '1');
		sleep 600;
	}
	else
	{
		$state->{n}++;
		$state->{bytes} += length($body);
		write_file("$dir/count", "$state->{n} $state->{bytes}");
		if ($keep)
		{
			my ($path) = $reqline =~ /^POST (\S+) /;
			write_file(sprintf("%s/req-%06d.json", $dir, $state->{n}),
				encode_json({ path => $path // '', content_type => $h{'content-type'} // '',
					content_types => $h{'count-content-type'} // 0, body => $body }));
		}
	}
	print $c "HTTP/1.1 $code $text\r\nContent-Type: text/plain\r\n"
	  . "Content-Length: " . length($resp) . "\r\nConnection: close\r\n\r\n$resp";
}

# Start a receiver in a child process; $dir must exist.
sub start
{
	my ($dir, %opt) = @_;
	set_mode($dir, 'ok');
	my $sock = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1',
		LocalPort => 0,
		Proto => 'tcp',
		Listen => 64,
		ReuseAddr => 1) or die "listen: $!";
	my $port = $sock->sockport;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		# never run the parent's END blocks (a TAP test's node teardown),
		# never hold the parent's output open
		$SIG{PIPE} = 'IGNORE';
		open STDOUT, '>', '/dev/null';
		open STDERR, '>', '/dev/null';
		%running = ();
		my %state = (n => 0, bytes => 0);
		while (my $c = $sock->accept)
		{
			serve_one($c, $dir, $opt{keep}, \%state);
			close $c;
		}
		POSIX::_exit(0);
	}
	close $sock;
	$running{$pid} = 1;
	return { pid => $pid, port => $port, dir => $dir,
		url => "http://127.0.0.1:$port/v1/traces" };
}

sub stop
{
	my ($rx) = @_;
	kill 'KILL', $rx->{pid};
	waitpid $rx->{pid}, 0;
	delete $running{ $rx->{pid} };
}

1;
