// Starts Amazon's DynamoDB Local bound to 127.0.0.1 only. DynamoDB Local has no option for
// the listen address (its Jetty server takes every interface), and this project's servers
// must stay on loopback, so this launcher builds the server the way DynamoDBLocal.jar's own
// main does and sets the connector's host before starting it.
//
// "-port 0" asks for a free port (DynamoDB Local itself rejects 0): the port taken is
// printed as "DynamoDB Local listening on http://127.0.0.1:PORT", which shared/emulator and
// localstack/emulators.sh wait for, so two test processes never race for a port.
//
// Compiled by shared/emulator and `localstack/emulators.sh prepare` with the compiler that
// every Java 17 runtime image carries (java -m jdk.compiler/com.sun.tools.javac.Main), so a
// JRE is enough. Telemetry is never configured, as with -disableTelemetry.
import java.lang.reflect.Field;
import java.util.Arrays;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

public class DynamoDBLoopback {
  public static void main(String[] args) throws Exception {
    String[] cli = Arrays.copyOf(args, args.length);
    boolean anyPort = false;
    for (int i = 0; i + 1 < cli.length; i++) {
      if (cli[i].equals("-port") && cli[i + 1].equals("0")) {
        cli[i + 1] = "8000"; // placeholder for the CLI parser; the connector gets port 0
        anyPort = true;
      }
    }
    DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(cli);
    Field field = DynamoDBProxyServer.class.getDeclaredField("server");
    field.setAccessible(true);
    Server server = (Server) field.get(proxy);
    for (Connector c : server.getConnectors()) {
      ServerConnector connector = (ServerConnector) c;
      connector.setHost("127.0.0.1");
      if (anyPort) {
        connector.setPort(0);
      }
    }
    // safeStart, unlike start, lets a bind failure end the process instead of only
    // printing it, so whoever waits for the port sees the exit.
    proxy.safeStart();
    for (Connector c : server.getConnectors()) {
      System.out.println(
          "DynamoDB Local listening on http://127.0.0.1:" + ((ServerConnector) c).getLocalPort());
    }
    System.out.flush();
    proxy.join();
  }
}
