Console.WriteLine("engine");
